"""Benchmark: RQ notification jobs per second through each worker command, on the same jobs.

    cd api && python -m bench.rq_workers [--jobs 3000] [--stock-jobs 30]

Starts its own PostgreSQL and Redis (devtools.devstack) and, one after the other, the
stock `rq worker`, the `PreloadedWorker`, the `InProcessWorker` and the `BatchWorker`
(single process and a 2-process `rq worker-pool`, the recommended command) with their
documented commands, each draining the same batch of jobs on the `notifications` queue:

- notification: `send_new_like_notification_job` for a user with no devices, as the API
  queues it: a task record started and finished, the in-app notification stored, the
  user's push preference read;
- tracked no-op: `ping_job`, the task-record bookkeeping alone.

Rate = jobs / (first job's start to last job's end, from the task records): worker start-up
is not counted. Prints jobs/s and the ratio to the stock worker measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from bench.stack import bench_stack

JOB_KINDS = {
    "notification": (
        "backend_app.core.rq_tasks.send_new_like_notification_job",
        {"liker_id": 2, "liker_name": "Bench Liker", "post_owner_id": 1, "post_id": 1},
    ),
    "tracked no-op": ("backend_app.core.rq_tasks.ping_job", {}),
}
GOAL_JOBS_PER_SECOND = 1000
GOAL_RATIO = 50


def seed(stack) -> None:
    assert stack.primary is not None
    stack.primary.psql(
        "INSERT INTO users (email, username, first_name, last_name, password_hash, role)"
        " VALUES ('owner@example.com', 'owner', 'Post', 'Owner', 'x', 'job_seeker'),"
        " ('liker@example.com', 'liker', 'Bench', 'Liker', 'x', 'job_seeker')"
    )


def drain(stack, command: list[str], kind: str, jobs: int, log_dir: Path, name: str) -> float:
    from backend_app.core import rq_app
    from tests.processes import Worker

    assert stack.primary is not None
    stack.primary.psql("TRUNCATE task_records, outbox_messages, notifications")
    func, kwargs = JOB_KINDS[kind]
    queue = rq_app.get_queue("notifications")
    with rq_app.get_redis().pipeline() as pipeline:
        for _ in range(jobs):
            queue.enqueue_call(func, kwargs=kwargs, result_ttl=60, pipeline=pipeline)
        pipeline.execute()
    worker = Worker(name, command, "Listening on", log_dir)
    started = time.perf_counter()
    worker.start(timeout=120)
    try:
        while queue.count or stack.primary.psql("SELECT count(*) FROM task_records WHERE status = 'succeeded'") != str(
            jobs
        ):
            if time.perf_counter() - started > 600:
                raise SystemExit(f"{name}: jobs not drained in 600 s")
            time.sleep(0.05)
    finally:
        worker.stop()
    if kind == "notification":
        stored = stack.primary.psql("SELECT count(*) FROM notifications WHERE type = 'like' AND user_id = 1")
        if stored != str(jobs):
            raise SystemExit(f"{name}: {stored} notifications stored for {jobs} jobs")
    # From the first job's start to the last job's end: worker start-up is not counted.
    elapsed = float(
        stack.primary.psql("SELECT EXTRACT(EPOCH FROM max(finished_at) - min(started_at)) FROM task_records")
    )
    return jobs / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=3000, help="jobs for the fast workers")
    parser.add_argument("--stock-jobs", type=int, default=30, help="jobs for the stock worker (it is slow)")
    args = parser.parse_args()

    from tests.processes import BIN_DIR

    with bench_stack("rq", replicas=0) as stack:
        root = stack.root
        seed(stack)
        url = os.environ["REDIS_URL"]
        rq = str(BIN_DIR / "rq")

        def worker(worker_class: str, pool: int = 0) -> list[str]:
            command = [rq, "worker-pool", "notifications", "-n", str(pool)] if pool else [rq, "worker", "notifications"]
            return [*command, "--url", url, "--worker-class", f"backend_app.core.rq_worker.{worker_class}"]

        runs = [
            ("stock rq worker", [rq, "worker", "notifications", "--url", url], args.stock_jobs),
            ("PreloadedWorker", worker("PreloadedWorker"), args.stock_jobs * 4),
            ("InProcessWorker", worker("InProcessWorker"), args.jobs // 3),
            ("BatchWorker", worker("BatchWorker"), args.jobs),
            ("BatchWorker pool x2", worker("BatchWorker", pool=2), args.jobs),
        ]
        rates: dict[str, dict[str, float]] = {}
        for kind in JOB_KINDS:
            rates[kind] = {}
            for name, command, jobs in runs:
                label = f"{kind.replace(' ', '_')}-{name.replace(' ', '_')}"
                rates[kind][name] = drain(stack, command, kind, jobs, root, label)
        for kind, by_worker in rates.items():
            stock = by_worker["stock rq worker"]
            print(f"\n{kind} jobs")
            for name, rate in by_worker.items():
                print(f"  {name:22s} {rate:8.1f} jobs/s   {rate / stock:7.1f}x stock")
        best = rates["notification"]["BatchWorker pool x2"]
        ratio = best / rates["notification"]["stock rq worker"]
        print(
            f"\nrecommended (rq worker-pool -n 2 --worker-class ...BatchWorker), notification jobs: "
            f"{best:.0f} jobs/s, {ratio:.0f}x stock; goal >= {GOAL_JOBS_PER_SECOND:,} jobs/s and >= {GOAL_RATIO}x: "
            + ("met" if best >= GOAL_JOBS_PER_SECOND and ratio >= GOAL_RATIO else "NOT met")
        )


if __name__ == "__main__":
    main()

"""Benchmark: RQ jobs per second through each worker command, on the same jobs.

    cd api && python -m bench.rq_workers [--jobs 2000] [--stock-jobs 30]

Starts its own PostgreSQL and Redis (backend_app.devstack) and, one after the other, the
stock `rq worker`, the `PreloadedWorker` and the `InProcessWorker` (single process and a
2-process `rq worker-pool`) with their documented commands, each draining the same batch
of tracked jobs (`backend_app.core.rq_tasks.ping_job`: a task-record start and finish in
PostgreSQL, the bookkeeping every real job pays). Prints jobs/s and the ratio to stock.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path


def drain(stack, command: list[str], jobs: int, log_dir: Path, name: str, ready: str) -> float:
    from backend_app.core import rq_app
    from tests.processes import Worker

    assert stack.primary is not None
    stack.primary.psql("TRUNCATE task_records, outbox_messages")
    queue = rq_app.get_queue("notifications")
    with rq_app.get_redis().pipeline() as pipeline:
        for _ in range(jobs):
            queue.enqueue_call("backend_app.core.rq_tasks.ping_job", result_ttl=60, pipeline=pipeline)
        pipeline.execute()
    worker = Worker(name, command, ready, log_dir)
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
    # From the first job's start to the last job's end: worker start-up is not counted.
    elapsed = float(
        stack.primary.psql("SELECT EXTRACT(EPOCH FROM max(finished_at) - min(started_at)) FROM task_records")
    )
    return jobs / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000, help="jobs for the fast workers")
    parser.add_argument("--stock-jobs", type=int, default=30, help="jobs for the stock worker (it is slow)")
    args = parser.parse_args()

    from backend_app.core.config import get_settings
    from backend_app.devstack import LocalStack, run_migrations
    from tests.processes import BIN_DIR

    root = Path(tempfile.mkdtemp(prefix="jobplatform-bench-rq-"))
    root.chmod(0o711)
    stack = LocalStack(root, replicas=0, durable=True)
    try:
        stack.start()
        os.environ.update(stack.environment())
        get_settings.cache_clear()
        run_migrations(dict(os.environ))
        url = os.environ["REDIS_URL"]
        rq = str(BIN_DIR / "rq")
        runs = [
            ("stock rq worker", [rq, "worker", "notifications", "--url", url], args.stock_jobs, "Listening on"),
            (
                "PreloadedWorker",
                [rq, "worker", "notifications", "--url", url, "-w", "backend_app.core.rq_worker.PreloadedWorker"],
                args.stock_jobs * 4,
                "Listening on",
            ),
            (
                "InProcessWorker",
                [rq, "worker", "notifications", "--url", url, "-w", "backend_app.core.rq_worker.InProcessWorker"],
                args.jobs,
                "Listening on",
            ),
            (
                "InProcessWorker pool x2",
                [
                    rq,
                    "worker-pool",
                    "notifications",
                    "-n",
                    "2",
                    "--url",
                    url,
                    "-w",
                    "backend_app.core.rq_worker.InProcessWorker",
                ],
                args.jobs,
                "Listening on",
            ),
        ]
        rates = {}
        for name, command, jobs, ready in runs:
            rates[name] = drain(stack, command, jobs, root, name.replace(" ", "_"), ready)
        stock = rates["stock rq worker"]
        for name, rate in rates.items():
            print(f"{name:26s} {rate:8.1f} jobs/s   {rate / stock:6.1f}x stock")
        print("goal: >= 1,000 jobs/s and >= 50x stock (first job start to last job end)")
    finally:
        stack.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

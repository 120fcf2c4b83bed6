"""The RQ processes as deployed (the Procfile's own `rq` and `rq-video` lines, run as honcho
runs them) under the faults an operator meets: a killed work horse, Redis restarted without
its data, and a stop (SIGTERM to the process group) with work under way."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from redis import Redis
from rq import Callback, Retry
from rq.job import Job
from rq.registry import StartedJobRegistry
from rq.utils import utcformat
from rq.worker import Worker as RQWorker

from backend_app.core import rq_app
from devtools.devstack import LocalStack
from tests.conftest import query
from tests.processes import REPO_DIR, procfile_commands, procfile_environment, wait_until

HONCHO_GRACE_SECONDS = 5  # honcho's wait between SIGTERM and SIGKILL to a process group
RECOVERY_SECONDS = 30  # the bound promised after Redis is back


class ProcfileProcess:
    """One Procfile entry run as honcho runs it: `bash -c LINE` from the repository root, in
    its own process group, stopped with SIGTERM to the whole group."""

    def __init__(self, entry: str, log_dir: Path) -> None:
        self.entry = entry
        self.log = log_dir / f"{entry}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ProcfileProcess:
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(
                ["bash", "-c", procfile_commands()[self.entry]],
                cwd=REPO_DIR,
                env=procfile_environment(),
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop_like_honcho(self) -> float:
        """SIGTERM to the group; the seconds it took to exit (SIGKILL and fail after the grace)."""
        assert self.process is not None
        began = time.monotonic()
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=HONCHO_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.entry} still running {HONCHO_GRACE_SECONDS}s after SIGTERM") from None
        return time.monotonic() - began

    def kill(self) -> None:
        if self.running():
            assert self.process is not None
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


@pytest.fixture
def procfile(tmp_path: Path) -> Iterator[Callable[[str], ProcfileProcess]]:
    started: list[ProcfileProcess] = []

    def start(entry: str) -> ProcfileProcess:
        started.append(ProcfileProcess(entry, tmp_path).start())
        return started[-1]

    yield start
    for process in started:
        process.kill()


def redis() -> Redis:
    return rq_app.get_redis()


def all_locks_held() -> bool:
    return all(rq_app.scheduler_lock_holders(redis()).values())


def live_on(queue: str) -> int:
    return sum(1 for worker in rq_app.live_workers(redis()) if queue in worker.queue_names())


def deployed_rq_is_ready() -> bool:
    return all_locks_held() and live_on("notifications") == 2 and live_on("video_processing") == 1


def work_horse_of(process: ProcfileProcess) -> int | None:
    """The video worker's work horse: its child that leads its own process group."""
    assert process.process is not None
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(status.parent.name)
        if int(fields[1]) == process.process.pid and int(fields[2]) == pid:
            return pid
    return None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def all_finished(jobs: list[Job | None]) -> bool:
    return all(job is not None and job.get_status(refresh=True) == "finished" for job in jobs)


def enqueue_video_effect(key: str, sleep: float, retry_after: int = 1) -> Job:
    return rq_app.get_queue(rq_app.VIDEO_QUEUE).enqueue_call(
        "tests.worker_tasks.record_effect_job",
        kwargs={"key": key, "sleep_after_effect": sleep},
        retry=Retry(max=1, interval=[retry_after]),
        on_failure=Callback(rq_app.FAILURE_CALLBACK),
    )


async def test_a_video_job_whose_work_horse_was_killed_is_retried(
    procfile: Callable[[str], ProcfileProcess], stack: LocalStack, test_task_tables: None
) -> None:
    video = procfile("rq-video")
    await wait_until(lambda: rq_app.scheduler_lock_holders(redis())["video_processing"] is not None, what="a scheduler")
    job = enqueue_video_effect("video", sleep=3)
    await wait_until(lambda: query(stack, "SELECT count(*) FROM test_task_effects") == "1", what="the first run")
    horse = work_horse_of(video)
    assert horse is not None
    os.kill(horse, signal.SIGKILL)

    # The retry waits in rq:scheduled:video_processing; the video worker's own scheduler
    # moves it back to the queue when due.
    await wait_until(lambda: job.get_status(refresh=True) == "scheduled", seconds=10, what="the retry to be scheduled")
    assert query(stack, f"SELECT status, attempts FROM task_records WHERE id = '{job.id}'") == "retrying|1"
    await wait_until(lambda: job.get_status(refresh=True) == "finished", seconds=20, what="the retry to run")
    assert query(stack, f"SELECT status, attempts FROM task_records WHERE id = '{job.id}'") == "succeeded|2"
    assert video.running()


async def test_the_video_worker_stops_within_the_grace_and_puts_the_running_job_back(
    procfile: Callable[[str], ProcfileProcess], stack: LocalStack, test_task_tables: None
) -> None:
    video = procfile("rq-video")
    await wait_until(lambda: live_on("video_processing") == 1, what="the video worker")
    job = enqueue_video_effect("long", sleep=300)
    await wait_until(lambda: query(stack, "SELECT count(*) FROM test_task_effects") == "1", what="the job to start")
    horse = work_horse_of(video)
    assert horse is not None

    assert video.stop_like_honcho() < HONCHO_GRACE_SECONDS
    assert not alive(horse)  # no orphan horse goes on outside the stop
    # Back at the front of its queue, not failed, none of its retries spent.
    assert job.get_status(refresh=True) == "queued"
    assert rq_app.get_queue(rq_app.VIDEO_QUEUE).job_ids == [job.id]
    assert job.retries_left == 1
    # Its record is queued again, the interrupted start not counted.
    assert query(stack, f"SELECT status, attempts FROM task_records WHERE id = '{job.id}'") == "queued|0"
    assert RQWorker.all(connection=redis()) == []
    assert rq_app.scheduler_lock_holders(redis())["video_processing"] is None
    assert "is back at the front of video_processing" in video.output()


async def test_a_work_horse_dies_with_its_killed_worker(
    procfile: Callable[[str], ProcfileProcess], stack: LocalStack, test_task_tables: None
) -> None:
    video = procfile("rq-video")
    await wait_until(lambda: live_on("video_processing") == 1, what="the video worker")
    enqueue_video_effect("orphan", sleep=300)
    await wait_until(lambda: query(stack, "SELECT count(*) FROM test_task_effects") == "1", what="the job to start")
    horse = work_horse_of(video)
    assert horse is not None
    assert video.process is not None

    os.kill(video.process.pid, signal.SIGKILL)  # the worker alone; its horse has a group of its own
    video.process.wait(timeout=10)

    # No orphan goes on transcoding beside the job's retry.
    await wait_until(lambda: not alive(horse), seconds=5, what="the horse to die with its worker")


async def test_a_running_video_job_that_redis_lost_is_written_back_by_its_worker(
    procfile: Callable[[str], ProcfileProcess], stack: LocalStack, test_task_tables: None
) -> None:
    assert stack.redis is not None
    video = procfile("rq-video")
    await wait_until(lambda: live_on("video_processing") == 1, what="the video worker")
    job = enqueue_video_effect("kept", sleep=300)
    await wait_until(lambda: query(stack, "SELECT count(*) FROM test_task_effects") == "1", what="the job to start")

    stack.redis.stop()
    stack.redis.start()  # the test Redis keeps nothing on disk: the running job is gone from it
    assert not redis().exists(job.key)

    # At its next heartbeat (every 30 s) the worker writes back what it runs, so the task
    # reconciler sees a running job, not a lost one, and RQ's abandoned-job handling would
    # find it if the worker died now.
    await wait_until(lambda: redis().exists(job.key), seconds=45, what="the job written back")
    assert job.get_status(refresh=True) == "started"
    assert job.id in StartedJobRegistry(rq_app.VIDEO_QUEUE, connection=redis()).get_job_ids()
    assert "wrote it back" in video.output()
    assert query(stack, f"SELECT status, attempts FROM task_records WHERE id = '{job.id}'") == "started|1"

    # A stop still hands it back to its queue, as without the loss.
    assert video.stop_like_honcho() < HONCHO_GRACE_SECONDS
    assert job.get_status(refresh=True) == "queued"
    assert rq_app.get_queue(rq_app.VIDEO_QUEUE).job_ids == [job.id]
    assert "Traceback" not in video.output()


async def test_schedulers_and_workers_come_back_after_redis_restarts_without_its_data(
    procfile: Callable[[str], ProcfileProcess], stack: LocalStack
) -> None:
    assert stack.redis is not None
    pool, video = procfile("rq"), procfile("rq-video")
    await wait_until(deployed_rq_is_ready, what="the deployed RQ processes")

    stack.redis.stop()
    await asyncio.sleep(3)
    stack.redis.start()  # the test Redis keeps nothing on disk: it comes back empty
    assert RQWorker.all(connection=redis()) == []
    await wait_until(deployed_rq_is_ready, seconds=RECOVERY_SECONDS, what="locks and workers after the restart")

    jobs = [rq_app.enqueue_job(queue, "backend_app.core.rq_tasks.ping_job") for queue in rq_app.RQ_QUEUES]
    await wait_until(lambda: all_finished(jobs), what="new jobs on every queue")
    assert pool.running()
    assert video.running()
    for process in (pool, video):
        assert "Traceback" not in process.output()
    assert "registered again" in pool.output()

    pool.stop_like_honcho()
    video.stop_like_honcho()
    assert RQWorker.all(connection=redis()) == []


async def test_the_pool_stops_within_the_grace_under_load_and_leaves_nothing_registered(
    procfile: Callable[[str], ProcfileProcess], stack: LocalStack, test_task_tables: None
) -> None:
    queues = {name: rq_app.get_queue(name) for name in ("notifications", "analytics")}
    feeding = threading.Event()
    feeding.set()

    def feed() -> None:
        number = 0
        while feeding.is_set():
            with redis().pipeline() as pipeline:
                for name, queue in queues.items():
                    queue.enqueue_call("backend_app.core.rq_tasks.ping_job", pipeline=pipeline)
                    queue.enqueue_call(
                        "tests.worker_tasks.record_effect_job",
                        kwargs={"key": f"{name}{number}", "sleep_after_effect": 0.3},
                        pipeline=pipeline,
                    )
                    number += 1
                pipeline.execute()
            time.sleep(0.02)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        for _ in range(3):  # a stop that misses the worker's main thread shows up one time in several
            pool = procfile("rq")
            await wait_until(lambda: live_on("notifications") == 2, what="the pool")
            await asyncio.sleep(2)  # busy with batches
            assert pool.stop_like_honcho() < HONCHO_GRACE_SECONDS
            assert RQWorker.all(connection=redis()) == []
            # Nothing taken is stranded: every job ran to its end or is back in its queue.
            for queue in queues.values():
                assert StartedJobRegistry(queue=queue).count == 0
                assert redis().llen(queue.intermediate_queue_key) == 0
            assert "Traceback" not in pool.output()
    finally:
        feeding.clear()
        feeder.join(timeout=5)


async def test_a_pool_that_passes_the_stop_on_late_lets_the_running_job_finish(
    procfile: Callable[[str], ProcfileProcess], stack: LocalStack, test_task_tables: None
) -> None:
    # CI's loaded machine: the pool passed honcho's stop on to its workers more than a second
    # after the workers had it, RQ took that for a second Ctrl-C and failed a running job.
    pool = procfile("rq")
    await wait_until(lambda: live_on("notifications") == 2, what="the pool")
    job = rq_app.get_queue("notifications").enqueue_call(
        "tests.worker_tasks.record_effect_job", kwargs={"key": "late", "sleep_after_effect": 4}
    )
    await wait_until(lambda: query(stack, "SELECT count(*) FROM test_task_effects") == "1", what="the job to start")
    assert pool.process is not None
    os.kill(pool.process.pid, signal.SIGSTOP)  # the pool's own process, busy elsewhere
    os.killpg(pool.process.pid, signal.SIGTERM)
    await asyncio.sleep(2)
    os.kill(pool.process.pid, signal.SIGCONT)  # it takes its SIGTERM now and passes it on

    pool.process.wait(timeout=HONCHO_GRACE_SECONDS)
    assert job.get_status(refresh=True) == "finished"
    assert RQWorker.all(connection=redis()) == []
    assert "stop passed on by the pool" in pool.output()
    assert "cold shut down" not in pool.output()
    assert "Traceback" not in pool.output()


def register(name: str, *, heartbeat_age: float, promised_ttl: int | None) -> RQWorker:
    worker = RQWorker(["analytics"], name=name, connection=redis())
    worker.register_birth()
    redis().hset(worker.key, "last_heartbeat", utcformat(datetime.now(UTC) - timedelta(seconds=heartbeat_age)))
    if promised_ttl is not None:
        redis().hset(worker.key, rq_app.HEARTBEAT_TTL_FIELD, promised_ttl)
    return worker


def test_live_workers_leave_out_a_worker_past_its_promised_heartbeat(stack: LocalStack) -> None:
    register("beating", heartbeat_age=5, promised_ttl=60)
    register("killed", heartbeat_age=90, promised_ttl=60)  # still in Redis: its key has not expired yet
    register("stock", heartbeat_age=300, promised_ttl=None)  # RQ's own worker: beats every 405 s

    assert len(RQWorker.all(connection=redis())) == 3
    assert sorted(worker.name for worker in rq_app.live_workers(redis())) == ["beating", "stock"]
    report = rq_app.check_rq_health()
    assert report["workers"] == 2
    assert report["queues"]["analytics"]["workers"] == 2


def test_scheduler_lock_holders_and_overdue_scheduled_jobs(stack: LocalStack) -> None:
    redis().set("rq:scheduler-lock:analytics", "scheduler-a", ex=60)
    assert rq_app.scheduler_lock_holders(redis()) == {
        "notifications": None,
        "analytics": "scheduler-a",
        "video_processing": None,
    }

    queue = rq_app.get_queue("notifications")
    current = datetime.now(UTC)
    queue.enqueue_at(current - timedelta(seconds=120), "backend_app.core.rq_tasks.ping_job")
    queue.enqueue_at(current - timedelta(seconds=2), "backend_app.core.rq_tasks.ping_job")
    queue.enqueue_at(current + timedelta(seconds=600), "backend_app.core.rq_tasks.ping_job")
    assert rq_app.overdue_scheduled(redis(), grace_seconds=30) == {
        "notifications": 1,
        "analytics": 0,
        "video_processing": 0,
    }
    assert rq_app.overdue_scheduled(redis(), grace_seconds=0)["notifications"] == 2


async def test_the_pool_stops_within_the_grace_when_idle_after_its_first_jobs(
    procfile: Callable[[str], ProcfileProcess], stack: LocalStack
) -> None:
    # Workers waiting in their dequeue after their first jobs: where a stop signal taken by
    # the pub/sub thread left the main thread deaf (not every time; hence several rounds).
    for _ in range(5):
        pool = procfile("rq")
        await wait_until(lambda: live_on("notifications") == 2, what="the pool")
        jobs = [
            rq_app.enqueue_job(queue, "backend_app.core.rq_tasks.ping_job") for queue in ("notifications", "analytics")
        ]
        await wait_until(lambda jobs=jobs: all_finished(jobs), what="the jobs")
        await asyncio.sleep(0.5)
        assert pool.stop_like_honcho() < HONCHO_GRACE_SECONDS
        assert RQWorker.all(connection=redis()) == []

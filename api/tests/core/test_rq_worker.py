"""The faster RQ worker classes, started with their documented commands, run tracked jobs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from backend_app.core import rq_app
from backend_app.devstack import LocalStack
from tests.processes import BIN_DIR, Worker, wait_until


@pytest.mark.parametrize("worker_class", ["InProcessWorker", "PreloadedWorker"])
async def test_worker_class_runs_tracked_jobs(worker_class: str, stack: LocalStack, tmp_path: Path) -> None:
    jobs = [rq_app.enqueue_job("analytics", "backend_app.core.rq_tasks.ping_job") for _ in range(5)]
    assert all(job is not None for job in jobs)
    worker = Worker(
        worker_class,
        [
            str(BIN_DIR / "rq"),
            "worker",
            "analytics",
            "--url",
            os.environ["REDIS_URL"],
            "--worker-class",
            f"backend_app.core.rq_worker.{worker_class}",
        ],
        "Listening on",
        tmp_path,
    ).start()
    assert stack.primary is not None
    try:
        await wait_until(
            lambda: stack.primary.psql("SELECT count(*) FROM task_records WHERE status = 'succeeded'") == "5",
            what="five jobs to succeed",
        )
    finally:
        worker.stop()

    assert stack.primary.psql("SELECT DISTINCT result::text FROM task_records") == '"pong"'
    assert all(rq_app.get_job_status(job.id)["status"] == "finished" for job in jobs if job is not None)

"""rq_app against a real Redis: enqueue, status, cancel, health, and Redis being down."""

from __future__ import annotations

import os
import subprocess
import sys

from backend_app.core import rq_app
from devtools.devstack import LocalStack, free_port
from tests.processes import API_DIR


def test_enqueue_job_uses_the_queue_settings_and_can_be_inspected_and_cancelled(stack: LocalStack) -> None:
    job = rq_app.enqueue_job("video_processing", "backend_app.core.rq_tasks.ping_job")

    assert job is not None
    assert job.timeout == rq_app.QUEUE_CONFIG["video_processing"].job_timeout == 1800
    assert job.retries_left == len(rq_app.QUEUE_CONFIG["video_processing"].retry_intervals)
    status = rq_app.get_job_status(job.id)
    assert status is not None
    assert (status["status"], status["queue"]) == ("queued", "video_processing")

    assert rq_app.cancel_job(job.id) is True
    assert rq_app.get_job_status(job.id)["status"] == "canceled"
    assert rq_app.cancel_job(job.id) is False
    assert rq_app.cancel_job("no-such-job") is False
    assert rq_app.get_job_status("no-such-job") is None


def test_enqueue_job_returns_none_when_redis_is_down(stack: LocalStack) -> None:
    assert stack.redis is not None
    stack.redis.stop()

    assert rq_app.enqueue_job("notifications", "backend_app.core.rq_tasks.ping_job") is None
    health = rq_app.check_rq_health()
    assert health["status"] == "unhealthy"
    assert health["error"] == "ConnectionError"


def test_health_lists_queues_and_no_workers(stack: LocalStack) -> None:
    rq_app.enqueue_job("analytics", "backend_app.core.rq_tasks.ping_job")

    health = rq_app.check_rq_health()

    assert health["status"] == "degraded"  # nobody listens in this test
    assert health["queues"]["analytics"]["depth"] == 1
    assert set(health["queues"]) == {"notifications", "analytics", "video_processing"}


def test_importing_the_apps_needs_no_redis() -> None:
    env = {**os.environ, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    result = subprocess.run(
        [sys.executable, "-c", "import backend_app.core.rq_app, backend_app.core.celery_app, backend_app.main"],
        cwd=API_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr

"""RQ job functions (queues notifications, analytics, video_processing). Thin, like celery_tasks."""

from __future__ import annotations

from rq import get_current_job

from backend_app.core.rq_app import get_redis
from backend_app.health.canary import mark_canary_done
from backend_app.tasks.tracking import tracked_job


def canary_job(canary_id: str) -> None:
    """The health check's probe: proves a worker is taking jobs off this queue."""
    job = get_current_job()
    queue = job.origin if job is not None else "unknown"
    mark_canary_done(get_redis(), "rq", queue, canary_id)


@tracked_job
def ping_job() -> str:
    """A tracked no-op: checks the whole path (outbox, relay, queue, worker, task record)."""
    return "pong"

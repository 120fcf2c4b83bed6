"""The canaries: tiny untracked tasks the health check keeps in flight per queue."""

from __future__ import annotations

from rq import get_current_job

from backend_app.core.redis import get_redis
from backend_app.health.canary import mark_canary_done
from backend_app.worker.queues import EMAIL_QUEUE, NOTIFICATIONS_QUEUE
from backend_app.worker.registry import celery_task, rq_task


@celery_task(name="backend_app.core.celery_tasks.canary", queue=EMAIL_QUEUE, tracked=False)
def canary(canary_id: str) -> None:
    """Proves a Celery worker is taking messages off the queue."""
    mark_canary_done(get_redis(), "celery", EMAIL_QUEUE, canary_id)


@rq_task(queue=NOTIFICATIONS_QUEUE, tracked=False)
def canary_job(canary_id: str) -> None:
    """Proves an RQ worker is taking jobs off this queue (sent to every RQ queue)."""
    job = get_current_job()
    mark_canary_done(get_redis(), "rq", job.origin if job is not None else "unknown", canary_id)

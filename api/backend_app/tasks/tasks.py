"""Task-record housekeeping (Celery beat) and the tracked no-op that checks the whole path."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from celery.schedules import crontab

from backend_app.core.config import get_settings
from backend_app.db.lifecycle import get_database_router
from backend_app.tasks import repository
from backend_app.worker.queues import EMAIL_QUEUE, NOTIFICATIONS_QUEUE, time_limits
from backend_app.worker.registry import celery_task, rq_task
from backend_app.worker.runtime import run_async

logger = logging.getLogger(__name__)


async def expire_stalled() -> list[str]:
    """Mark dead the tasks left `started` for twice their queue's time limit: past that,
    their worker is gone."""
    now = datetime.now(UTC)
    limits = time_limits(get_settings())
    cutoffs = {queue: now - timedelta(seconds=2 * limit) for queue, limit in limits.items()}
    async with get_database_router().write_session() as session:
        return await repository.expire_stalled(session, started_before=cutoffs)


async def _purge_finished(cutoff: datetime) -> int:
    async with get_database_router().write_session() as session:
        return await repository.delete_finished_before(session, cutoff)


@celery_task(name="backend_app.core.celery_tasks.expire_stalled_tasks", schedule=crontab(minute="*/10"))
def expire_stalled_tasks() -> dict[str, object]:
    """Beat, every 10 minutes: tasks left `started` by a worker that died become `dead`."""
    expired = run_async(expire_stalled())
    if expired:
        logger.warning("marked %d stalled task(s) dead: %s", len(expired), ", ".join(expired[:20]))
    return {"expired": len(expired)}


@celery_task(name="backend_app.core.celery_tasks.purge_expired_task_records", schedule=crontab(minute=47))
def purge_expired_task_records() -> dict[str, int]:
    """Beat, hourly: finished task records older than TASK_RECORD_RETENTION_DAYS (dead ones stay)."""
    cutoff = datetime.now(UTC) - timedelta(days=get_settings().task_record_retention_days)
    return {"deleted": run_async(_purge_finished(cutoff))}


@celery_task(name="backend_app.core.celery_tasks.ping", queue=EMAIL_QUEUE)
def ping() -> str:
    """A tracked no-op: checks the whole path (outbox, relay, queue, worker, task record)."""
    return "pong"


@rq_task(queue=NOTIFICATIONS_QUEUE)
def ping_job() -> str:
    """The same for RQ (any RQ queue: the relay publishes it where the caller says)."""
    return "pong"

"""Celery tasks (queue `emails`). Thin: decode arguments, call a service, return a small result."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from backend_app.core.celery_app import EMAIL_QUEUE, celery_app
from backend_app.core.config import get_settings
from backend_app.core.read_replica import get_database_router
from backend_app.core.rq_app import get_redis
from backend_app.core.worker_runtime import run_async
from backend_app.health.canary import mark_canary_done
from backend_app.outbox import repository as outbox_repository
from backend_app.tasks import repository as task_repository
from backend_app.tasks.tracking import TrackedTask

_settings = get_settings()
TASK_OPTIONS = {
    "base": TrackedTask,
    "max_retries": _settings.task_max_retries,
    "retry_backoff_max": _settings.task_retry_backoff_max,
}


@celery_app.task(ignore_result=True)
def canary(canary_id: str) -> None:
    """The health check's probe: proves a worker is taking messages off the queue."""
    mark_canary_done(get_redis(), "celery", EMAIL_QUEUE, canary_id)


async def _purge_delivered_outbox_messages() -> int:
    cutoff = datetime.now(UTC) - timedelta(days=get_settings().outbox_retention_days)
    async with get_database_router().write_session() as session:
        return await outbox_repository.delete_sent_before(session, cutoff)


async def _purge_expired_task_records() -> int:
    cutoff = datetime.now(UTC) - timedelta(days=get_settings().task_record_retention_days)
    async with get_database_router().write_session() as session:
        return await task_repository.delete_finished_before(session, cutoff)


@celery_app.task(**TASK_OPTIONS)
def purge_delivered_outbox_messages() -> dict[str, int]:
    """Beat, hourly: outbox rows published more than OUTBOX_RETENTION_DAYS ago."""
    return {"deleted": run_async(_purge_delivered_outbox_messages())}


@celery_app.task(**TASK_OPTIONS)
def purge_expired_task_records() -> dict[str, int]:
    """Beat, hourly: finished task records older than TASK_RECORD_RETENTION_DAYS (dead ones stay)."""
    return {"deleted": run_async(_purge_expired_task_records())}


@celery_app.task(**TASK_OPTIONS)
def ping() -> str:
    """A tracked no-op: checks the whole path (outbox, relay, queue, worker, task record)."""
    return "pong"

"""The outbox's housekeeping (Celery beat)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from celery.schedules import crontab

from backend_app.core.config import get_settings
from backend_app.db.lifecycle import get_database_router
from backend_app.outbox import repository
from backend_app.worker.registry import celery_task
from backend_app.worker.runtime import run_async


async def _purge(cutoff: datetime) -> int:
    async with get_database_router().write_session() as session:
        return await repository.delete_sent_before(session, cutoff)


@celery_task(name="backend_app.core.celery_tasks.purge_delivered_outbox_messages", schedule=crontab(minute=17))
def purge_delivered_outbox_messages() -> dict[str, int]:
    """Beat, hourly: outbox rows published more than OUTBOX_RETENTION_DAYS ago."""
    cutoff = datetime.now(UTC) - timedelta(days=get_settings().outbox_retention_days)
    return {"deleted": run_async(_purge(cutoff))}

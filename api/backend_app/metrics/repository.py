"""SQL for the scrape: aggregates and lookups by key, so a scrape costs a few statements
whatever the row count (the outbox backlog is `outbox.repository.backlog`)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend_app.tasks.models import TaskRecord


@dataclass(frozen=True)
class TaskTally:
    backend: str
    queue: str
    task: str
    status: str
    records: int
    attempts: int


async def task_tallies(session: AsyncSession) -> list[TaskTally]:
    """Task records and their attempts by backend, queue, task name and status (one GROUP BY)."""
    rows = await session.execute(
        select(
            TaskRecord.backend,
            TaskRecord.queue,
            TaskRecord.name,
            TaskRecord.status,
            func.count(),
            func.coalesce(func.sum(TaskRecord.attempts), 0),
        ).group_by(TaskRecord.backend, TaskRecord.queue, TaskRecord.name, TaskRecord.status)
    )
    return [
        TaskTally(backend.value, queue, name, status.value, records, attempts)
        for backend, queue, name, status, records, attempts in rows.all()
    ]


async def queued_since_seconds(session: AsyncSession, task_ids: list[str]) -> dict[str, float]:
    """How long ago each of these tasks was put on its queue (by the database's clock)."""
    if not task_ids:
        return {}
    rows = await session.execute(
        select(TaskRecord.id, func.extract("epoch", func.now() - TaskRecord.queued_at)).where(
            TaskRecord.id.in_(task_ids), TaskRecord.queued_at.is_not(None)
        )
    )
    return {task_id: float(age) for task_id, age in rows.all()}

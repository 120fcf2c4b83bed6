"""SQL for task records."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from backend_app.tasks.models import FINISHED_STATUSES, WAITING_STATUSES, TaskBackend, TaskRecord, TaskStatus

# Results and errors are for people reading the task API, not a data store.
MAX_ERROR_LENGTH = 2000


async def get(session: AsyncSession, task_id: str) -> TaskRecord | None:
    return await session.get(TaskRecord, task_id)


async def get_for_update(session: AsyncSession, task_id: str) -> TaskRecord | None:
    return await session.get(TaskRecord, task_id, with_for_update=True)


async def mark_queued(session: AsyncSession, task_ids: list[str]) -> None:
    await session.execute(
        update(TaskRecord)
        .where(TaskRecord.id.in_(task_ids), TaskRecord.status == TaskStatus.pending)
        .values(status=TaskStatus.queued, queued_at=func.now())
    )


async def start(
    session: AsyncSession,
    *,
    task_id: str,
    backend: TaskBackend,
    queue: str,
    name: str,
    payload: dict[str, Any],
) -> int | None:
    """Mark the task started (creating its record if it was enqueued directly).

    Returns the attempt number, or None when the record is finished (succeeded or
    cancelled): a duplicate delivery. Only the number comes back: this runs for every task.
    """
    statement = (
        insert(TaskRecord)
        .values(
            id=task_id,
            backend=backend,
            queue=queue,
            name=name,
            payload=payload,
            status=TaskStatus.started,
            attempts=1,
            queued_at=func.now(),
            started_at=func.now(),
        )
        .on_conflict_do_update(
            index_elements=[TaskRecord.id],
            set_={
                "status": TaskStatus.started,
                "attempts": TaskRecord.attempts + 1,
                "started_at": func.now(),
                "updated_at": func.now(),
                "finished_at": None,
            },
            where=TaskRecord.status.not_in([TaskStatus.succeeded, TaskStatus.cancelled]),
        )
        .returning(TaskRecord.attempts)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def finish(
    session: AsyncSession,
    *,
    task_id: str,
    status: TaskStatus,
    result: Any = None,
    error: str | None = None,
) -> None:
    values: dict[str, Any] = {"status": status, "updated_at": func.now()}
    if status in FINISHED_STATUSES:
        values["finished_at"] = func.now()
    if status is TaskStatus.succeeded:
        values["result"] = result
    if error is not None:
        values["last_error"] = error[:MAX_ERROR_LENGTH]
    await session.execute(
        update(TaskRecord).where(TaskRecord.id == task_id, TaskRecord.status.in_(_moves_to(status))).values(**values)
    )


def _moves_to(status: TaskStatus) -> list[TaskStatus]:
    """The statuses a record may leave for `status`: never cancelled, never backwards."""
    if status is TaskStatus.retrying:
        # A late retry notice must not overwrite the retry that already started or finished.
        return [TaskStatus.started]
    if status is TaskStatus.succeeded:
        return [s for s in TaskStatus if s is not TaskStatus.cancelled]
    return [s for s in TaskStatus if s not in (TaskStatus.succeeded, TaskStatus.cancelled)]


async def expire_stalled(session: AsyncSession, *, started_before: dict[str, datetime]) -> list[str]:
    """Mark dead the tasks of each queue still `started` since before its cut-off.

    A worker killed outright (OOM, a lost machine) leaves its task `started` with nobody
    left to record the end; RQ runs no callback for it on the last attempt.
    """
    expired: list[str] = []
    for queue, cutoff in started_before.items():
        rows = await session.scalars(
            update(TaskRecord)
            .where(TaskRecord.queue == queue, TaskRecord.status == TaskStatus.started, TaskRecord.started_at < cutoff)
            .values(
                status=TaskStatus.dead,
                finished_at=func.now(),
                last_error="the worker running it stopped answering; no result was recorded",
            )
            .returning(TaskRecord.id)
        )
        expired.extend(rows.all())
    return expired


async def list_for_owner(session: AsyncSession, owner_id: int, *, limit: int, offset: int) -> list[TaskRecord]:
    statement = (
        select(TaskRecord)
        .where(TaskRecord.owner_id == owner_id)
        .order_by(TaskRecord.created_at.desc(), TaskRecord.id)
        .limit(limit)
        .offset(offset)
    )
    return list((await session.scalars(statement)).all())


async def count_for_owner(session: AsyncSession, owner_id: int) -> int:
    return await session.scalar(select(func.count()).where(TaskRecord.owner_id == owner_id)) or 0


async def status_counts(session: AsyncSession, queue: str) -> dict[TaskStatus, int]:
    rows = await session.execute(
        select(TaskRecord.status, func.count()).where(TaskRecord.queue == queue).group_by(TaskRecord.status)
    )
    return {TaskStatus(status): count for status, count in rows.all()}


async def oldest_waiting_since(session: AsyncSession, queue: str) -> datetime | None:
    """When the longest-waiting task of `queue` was recorded (pending, queued or retrying)."""
    return await session.scalar(
        select(func.min(func.coalesce(TaskRecord.queued_at, TaskRecord.created_at))).where(
            TaskRecord.queue == queue, TaskRecord.status.in_(WAITING_STATUSES)
        )
    )


async def delete_finished_before(session: AsyncSession, cutoff: datetime) -> int:
    """Forget finished tasks; dead ones stay until someone requeues or inspects them."""
    result = await session.execute(
        delete(TaskRecord).where(
            TaskRecord.status.in_([TaskStatus.succeeded, TaskStatus.cancelled, TaskStatus.failed]),
            TaskRecord.finished_at < cutoff,
        )
    )
    return result.rowcount or 0


async def redact_kwargs(session: AsyncSession, *, task_id: str, names: tuple[str, ...]) -> None:
    """Replace the named keyword arguments in the stored payload with "***"."""
    payload = TaskRecord.payload
    for name in names:
        payload = func.jsonb_set(payload, ["kwargs", name], func.to_jsonb("***"), False)
    await session.execute(update(TaskRecord).where(TaskRecord.id == task_id).values(payload=payload))

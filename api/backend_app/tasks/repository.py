"""SQL for task records."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, delete, exists, func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from backend_app.outbox.models import OutboxMessage
from backend_app.tasks.models import FINISHED_STATUSES, WAITING_STATUSES, TaskBackend, TaskRecord, TaskStatus

# Results and errors are for people reading the task API, not a data store.
MAX_ERROR_LENGTH = 2000


async def get(session: AsyncSession, task_id: str) -> TaskRecord | None:
    return await session.get(TaskRecord, task_id)


async def get_for_update(session: AsyncSession, task_id: str) -> TaskRecord | None:
    return await session.get(TaskRecord, task_id, with_for_update=True)


async def mark_queued(session: AsyncSession, task_ids: list[str]) -> None:
    # Rows locked in id order, as workers' batch starts lock them (`_START`): two statements
    # taking the same rows in different orders deadlock.
    locked = select(TaskRecord.id).where(TaskRecord.id.in_(task_ids)).order_by(TaskRecord.id).with_for_update()
    await session.execute(
        update(TaskRecord)
        .where(TaskRecord.id.in_(locked.scalar_subquery()), TaskRecord.status == TaskStatus.pending)
        .values(status=TaskStatus.queued, queued_at=func.now())
    )


@dataclass(frozen=True)
class StartingTask:
    task_id: str
    queue: str
    name: str
    payload: dict[str, Any]


# A started record, or one more attempt on an existing record that has not finished; arrays
# in, so one statement (prepared once) serves one task or a whole batch.
_START = text(
    """
    INSERT INTO task_records (id, backend, queue, name, payload, status, attempts, queued_at, started_at)
    SELECT id, :backend, queue, name, payload, 'started', 1, now(), now()
    FROM unnest(
        CAST(:ids AS varchar[]), CAST(:queues AS varchar[]), CAST(:names AS varchar[]), CAST(:payloads AS jsonb[])
    ) AS starting(id, queue, name, payload)
    ORDER BY id  -- two batches lock shared rows in the same order
    ON CONFLICT (id) DO UPDATE SET
        status = 'started', attempts = task_records.attempts + 1,
        started_at = now(), updated_at = now(), finished_at = NULL
    WHERE task_records.status NOT IN ('succeeded', 'cancelled')
    RETURNING id, attempts
    """
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
    attempts = await start_many(session, backend=backend, tasks=[StartingTask(task_id, queue, name, payload)])
    return attempts.get(task_id)


async def start_many(session: AsyncSession, *, backend: TaskBackend, tasks: list[StartingTask]) -> dict[str, int]:
    """`start` for many tasks in one statement: the attempt number of each task that should
    run; a task missing from the answer is finished (a duplicate delivery). Ids must be unique."""
    if not tasks:
        return {}
    rows = await session.execute(
        _START,
        {
            "backend": backend.value,
            "ids": [task.task_id for task in tasks],
            "queues": [task.queue for task in tasks],
            "names": [task.name for task in tasks],
            "payloads": [json.dumps(task.payload) for task in tasks],
        },
    )
    return {task_id: attempts for task_id, attempts in rows.all()}


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


_SUCCEED = text(
    """
    UPDATE task_records SET status = 'succeeded', result = finished.result, finished_at = now(), updated_at = now()
    FROM unnest(CAST(:ids AS varchar[]), CAST(:results AS jsonb[])) AS finished(id, result)
    WHERE task_records.id = finished.id AND task_records.status <> 'cancelled'
    """
)


async def succeed_many(session: AsyncSession, results: dict[str, Any]) -> None:
    """`finish(status=succeeded)` for many tasks in one statement; `results` maps id to result."""
    if not results:
        return
    await session.execute(
        _SUCCEED, {"ids": list(results), "results": [json.dumps(result) for result in results.values()]}
    )


async def unstart_many(session: AsyncSession, task_ids: list[str]) -> None:
    """Undo `start` for tasks handed back to their queue before they ran (a worker stopping
    part-way through a batch): queued again, and the attempt that never happened not counted."""
    if not task_ids:
        return
    await session.execute(
        update(TaskRecord)
        .where(TaskRecord.id.in_(task_ids), TaskRecord.status == TaskStatus.started)
        .values(status=TaskStatus.queued, attempts=func.greatest(TaskRecord.attempts - 1, 0), updated_at=func.now())
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


async def cancel_waiting_of_owner(session: AsyncSession, owner_id: int) -> list[str]:
    """Cancel every task of `owner_id` that has not started (pending, queued, retrying), as
    `service.cancel` does one: the relay drops a cancelled pending task and a worker skips a
    cancelled queued one. Their unpublished outbox rows are settled too. Returns the ids."""
    waiting = select(TaskRecord.id).where(TaskRecord.owner_id == owner_id, TaskRecord.status.in_(WAITING_STATUSES))
    # Outbox rows first, as the relay locks them (claim) before their records (mark_queued).
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.task_id.in_(waiting.scalar_subquery()), OutboxMessage.sent_at.is_(None))
        .values(sent_at=func.now())
    )
    cancelled = await session.scalars(
        update(TaskRecord)
        .where(TaskRecord.owner_id == owner_id, TaskRecord.status.in_(WAITING_STATUSES))
        .values(status=TaskStatus.cancelled, finished_at=func.now(), updated_at=func.now())
        .returning(TaskRecord.id)
    )
    return list(cancelled.all())


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


async def unreconciled(session: AsyncSession, *, grace: timedelta, limit: int) -> list[Row[Any]]:
    """(id, backend, queue, status, attempts, started_at) of the records that should have a
    message in Redis and are old enough to check: waiting, or started, for longer than
    `grace`; oldest first, at most `limit`. (Whether a started one may still be running is
    the reconciler's call.)"""
    rows = await session.execute(
        select(
            TaskRecord.id,
            TaskRecord.backend,
            TaskRecord.queue,
            TaskRecord.status,
            TaskRecord.attempts,
            TaskRecord.started_at,
        )
        .where(
            or_(
                TaskRecord.status.in_([TaskStatus.queued, TaskStatus.retrying])
                & (TaskRecord.updated_at < func.now() - grace),
                (TaskRecord.status == TaskStatus.started) & (TaskRecord.started_at < func.now() - grace),
            ),
            # Already on its way again (a requeue, or a check before this one).
            ~exists().where(OutboxMessage.task_id == TaskRecord.id, OutboxMessage.sent_at.is_(None)),
        )
        .order_by(TaskRecord.updated_at)
        .limit(limit)
    )
    return list(rows.all())


async def try_transaction_lock(session: AsyncSession, key: int) -> bool:
    """PostgreSQL's advisory lock `key` until the transaction ends; False when another holds it."""
    return bool(await session.scalar(select(func.pg_try_advisory_xact_lock(key))))


async def count_republished(session: AsyncSession, task_ids: list[str]) -> None:
    """One more attempt each, and their grace period starts again (the new message needs time
    to reach Redis)."""
    await session.execute(
        update(TaskRecord)
        .where(TaskRecord.id.in_(task_ids))
        .values(attempts=TaskRecord.attempts + 1, updated_at=func.now())
    )

"""SQL for the outbox."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy import delete, event, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from backend_app.db.position import current_wal_insert_position
from backend_app.outbox.models import OutboxMessage
from backend_app.tasks.models import TaskBackend, TaskRecord, TaskStatus

NOTIFY_CHANNEL = "outbox"

# A session's `info` key: what to call once its transaction commits (set by record_tasks).
_AFTER_COMMIT = "outbox_after_commit"


@dataclass(frozen=True)
class ClaimedMessage:
    message_id: int
    task_id: str
    backend: TaskBackend
    queue: str
    name: str
    payload: dict[str, Any]
    publish_attempts: int
    request_id: str | None
    trace_context: dict[str, str] | None
    committed_at: datetime  # the row's creation, in the transaction that recorded the task


@dataclass(frozen=True)
class NewTask:
    """A task to record as pending with its outbox row."""

    task_id: str
    backend: TaskBackend
    queue: str
    name: str
    payload: dict[str, Any]
    owner_id: int | None
    request_id: str | None
    trace_context: dict[str, str] | None = None


# One round trip for the whole outbox write of a request, however many tasks it records: the
# task records (less those whose idempotency key is taken) and their outbox rows in the order
# given; then, unless this process's wakeup sends it after the commit (outbox/wakeup.py), the
# NOTIFY that PostgreSQL delivers only on commit.
_RECORD_TASKS = """
    WITH new AS (
        SELECT * FROM jsonb_to_recordset(CAST(:tasks AS jsonb)) AS new(
            position int, id text, backend text, queue text, name text, payload jsonb, owner_id bigint,
            request_id text, trace_context jsonb
        )
    ), task AS (
        INSERT INTO task_records (id, backend, queue, name, payload, owner_id, status, request_id, trace_context)
        SELECT id, backend, queue, name, payload, owner_id, 'pending', request_id, trace_context
        FROM new ORDER BY position
        ON CONFLICT (id) DO NOTHING
        RETURNING id, request_id, trace_context
    ), message AS (
        INSERT INTO outbox_messages (task_id, request_id, trace_context)
        SELECT task.id, task.request_id, task.trace_context FROM task JOIN new USING (id) ORDER BY new.position
        RETURNING task_id
    )
    """
_RECORDED = "ARRAY(SELECT task_id FROM message)"
_RECORD_TASKS_AND_NOTIFY = text(f"{_RECORD_TASKS} SELECT pg_notify('{NOTIFY_CHANNEL}', ''), {_RECORDED}")
_RECORD_TASKS_QUIETLY = text(f"{_RECORD_TASKS} SELECT NULL, {_RECORDED}")


async def record_tasks(
    session: AsyncSession, tasks: Sequence[NewTask], *, wake_after_commit: Callable[[], None] | None = None
) -> set[str]:
    """Record pending tasks and their outbox rows, each naming its `request_id` and
    `trace_context` (W3C traceparent/tracestate, core/tracing.py), in one statement; returns
    the ids recorded now (an id that existed already is left as it was).

    The statement also sends the relays' NOTIFY, unless `wake_after_commit` is given: then
    that is called once the transaction commits (never if it rolls back), to notify outside it."""
    rows = [
        {
            "position": position,
            "id": task.task_id,
            "backend": task.backend.value,
            "queue": task.queue,
            "name": task.name,
            "payload": task.payload,
            "owner_id": task.owner_id,
            "request_id": task.request_id,
            "trace_context": task.trace_context or None,
        }
        for position, task in enumerate(tasks)
    ]
    statement = _RECORD_TASKS_AND_NOTIFY
    if wake_after_commit is not None:
        session.info[_AFTER_COMMIT] = wake_after_commit
        statement = _RECORD_TASKS_QUIETLY
    result = await session.execute(statement, {"tasks": json.dumps(rows)})
    return set(result.one()[1])


@event.listens_for(Session, "after_commit")
def _call_after_commit(session: Session) -> None:
    callback = session.info.pop(_AFTER_COMMIT, None)
    if callback is not None:
        callback()


@event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    session.info.pop(_AFTER_COMMIT, None)


async def notify_relays(connection: asyncpg.Connection) -> None:
    """NOTIFY the relays, in a transaction of its own (outbox/wakeup.py's own connection)."""
    await connection.execute(f"NOTIFY {NOTIFY_CHANNEL}")


async def add_message(session: AsyncSession, task_id: str) -> None:
    """Another outbox row for an existing task (a requeue, a republish): it keeps the request
    id and the trace context the task was recorded with, so every attempt's log lines and spans
    lead back to that request."""
    await session.execute(
        insert(OutboxMessage).from_select(
            [OutboxMessage.task_id, OutboxMessage.request_id, OutboxMessage.trace_context],
            select(TaskRecord.id, TaskRecord.request_id, TaskRecord.trace_context).where(TaskRecord.id == task_id),
        )
    )
    # Delivered to listening relays when (and only if) the transaction commits.
    await session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": NOTIFY_CHANNEL})


async def claim(session: AsyncSession, limit: int) -> list[ClaimedMessage]:
    """Lock up to `limit` due messages; other relays skip them until this transaction ends."""
    statement = (
        select(
            OutboxMessage.id,
            OutboxMessage.task_id,
            OutboxMessage.publish_attempts,
            OutboxMessage.request_id,
            OutboxMessage.trace_context,
            OutboxMessage.created_at,
            TaskRecord.backend,
            TaskRecord.queue,
            TaskRecord.name,
            TaskRecord.payload,
            TaskRecord.status,
        )
        .join(TaskRecord, TaskRecord.id == OutboxMessage.task_id)
        .where(OutboxMessage.sent_at.is_(None), OutboxMessage.available_at <= func.now())
        .order_by(OutboxMessage.available_at, OutboxMessage.id)
        .limit(limit)
        .with_for_update(of=OutboxMessage, skip_locked=True)
    )
    rows = (await session.execute(statement)).all()
    cancelled = [row.id for row in rows if row.status is TaskStatus.cancelled]
    if cancelled:
        await mark_sent(session, cancelled)
    return [
        ClaimedMessage(
            row.id,
            row.task_id,
            row.backend,
            row.queue,
            row.name,
            row.payload,
            row.publish_attempts,
            row.request_id,
            row.trace_context,
            row.created_at,
        )
        for row in rows
        if row.status is not TaskStatus.cancelled
    ]


async def current_wal_position(session: AsyncSession) -> str:
    """The primary's WAL insert position: every transaction already committed ends before it."""
    return str(await current_wal_insert_position(session))


async def mark_sent(session: AsyncSession, message_ids: list[int]) -> None:
    await session.execute(update(OutboxMessage).where(OutboxMessage.id.in_(message_ids)).values(sent_at=func.now()))


async def postpone(session: AsyncSession, message_id: int, *, delay_seconds: float, error: str) -> None:
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message_id)
        .values(
            publish_attempts=OutboxMessage.publish_attempts + 1,
            available_at=func.now() + timedelta(seconds=delay_seconds),
            last_error=error[:2000],
        )
    )


async def backlog(session: AsyncSession) -> tuple[int, datetime | None]:
    """How many messages wait to be published, and since when the oldest waits."""
    row = (
        await session.execute(
            select(func.count(), func.min(OutboxMessage.created_at)).where(OutboxMessage.sent_at.is_(None))
        )
    ).one()
    return row[0], row[1]


async def delete_sent_before(session: AsyncSession, cutoff: datetime) -> int:
    result = await session.execute(delete(OutboxMessage).where(OutboxMessage.sent_at < cutoff))
    return result.rowcount or 0

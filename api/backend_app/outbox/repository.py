"""SQL for the outbox."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from backend_app.db.position import current_wal_insert_position
from backend_app.outbox.models import OutboxMessage
from backend_app.tasks.models import TaskBackend, TaskRecord, TaskStatus

NOTIFY_CHANNEL = "outbox"


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


# One round trip for the whole outbox write: the task record (unless the idempotency key
# is taken), its outbox row, and the NOTIFY that PostgreSQL delivers only on commit.
_RECORD_TASK = text(
    """
    WITH task AS (
        INSERT INTO task_records (id, backend, queue, name, payload, owner_id, status, request_id, trace_context)
        VALUES (
            :task_id, :backend, :queue, :name, CAST(:payload AS jsonb), :owner_id, 'pending', :request_id,
            CAST(:trace_context AS jsonb)
        )
        ON CONFLICT (id) DO NOTHING
        RETURNING id, request_id, trace_context
    ), message AS (
        INSERT INTO outbox_messages (task_id, request_id, trace_context)
        SELECT id, request_id, trace_context FROM task RETURNING id
    )
    SELECT pg_notify('outbox', ''), (SELECT count(*) FROM message)
    """
)


async def record_task(
    session: AsyncSession,
    *,
    task_id: str,
    backend: TaskBackend,
    queue: str,
    name: str,
    payload: dict[str, Any],
    owner_id: int | None,
    request_id: str | None,
    trace_context: dict[str, str] | None = None,
) -> bool:
    """Record a pending task and its outbox row, both naming `request_id` and `trace_context`
    (W3C traceparent/tracestate, core/tracing.py); False when the task id already existed."""
    result = await session.execute(
        _RECORD_TASK,
        {
            "task_id": task_id,
            "backend": backend.value,
            "queue": queue,
            "name": name,
            "payload": json.dumps(payload),
            "owner_id": owner_id,
            "request_id": request_id,
            "trace_context": json.dumps(trace_context) if trace_context else None,
        },
    )
    return bool(result.one()[1])


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

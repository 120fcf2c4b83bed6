"""Durable task records: one row per background task, whichever backend runs it."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Enum, ForeignKey, Index, Integer, String, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from backend_app.core.logging import MAX_REQUEST_ID_LENGTH
from backend_app.db.base import Base, CreatedAtMixin


class TaskBackend(enum.StrEnum):
    """The task system that runs a task: Celery (emails) or RQ (notifications, analytics, video processing)."""

    celery = "celery"
    rq = "rq"


class TaskStatus(enum.StrEnum):
    """A background task's state: `pending` (recorded, not yet on a queue), `queued`, `started`, `retrying` after
    an error, then `succeeded`, `failed` (a permanent error), `cancelled` or `dead` (retries exhausted; an
    administrator may requeue it)."""

    pending = "pending"  # recorded in the outbox, not yet on a queue
    queued = "queued"
    started = "started"
    retrying = "retrying"
    succeeded = "succeeded"
    failed = "failed"  # a permanent error: retrying would not help
    cancelled = "cancelled"
    dead = "dead"  # retries exhausted; stays visible and can be requeued


FINISHED_STATUSES = frozenset({TaskStatus.succeeded, TaskStatus.failed, TaskStatus.cancelled, TaskStatus.dead})
WAITING_STATUSES = frozenset({TaskStatus.pending, TaskStatus.queued, TaskStatus.retrying})


def _enum(enum_class: type[enum.Enum], length: int) -> Enum:
    return Enum(enum_class, native_enum=False, length=length, values_callable=lambda e: [m.value for m in e])


class TaskRecord(CreatedAtMixin, Base):
    __tablename__ = "task_records"
    __table_args__ = (
        Index("ix_task_records_owner_created", "owner_id", "created_at"),
        Index("ix_task_records_queue_status", "queue", "status"),
        # The reconciler's scan (tasks/reconcile.py): only the unfinished records.
        Index(
            "ix_task_records_unfinished_updated",
            "updated_at",
            postgresql_where=text("status IN ('queued', 'retrying', 'started')"),
        ),
    )

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    backend: Mapped[TaskBackend] = mapped_column(_enum(TaskBackend, 10), nullable=False)
    queue: Mapped[str] = mapped_column(String(50), nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    owner_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    status: Mapped[TaskStatus] = mapped_column(_enum(TaskStatus, 10), nullable=False)
    # What the task was called with, so a dead task can be requeued as it was.
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    queued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )
    last_error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[Any | None] = mapped_column(JSONB)
    # The X-Request-ID of the request that recorded the task (None outside a request), so the
    # task's log lines in the relay and the workers can be found from the request and back.
    request_id: Mapped[str | None] = mapped_column(String(MAX_REQUEST_ID_LENGTH))
    # The W3C trace context (traceparent, tracestate) the task was recorded in, when traces are
    # on: every publish of it (a requeue's, a republish's) joins that trace (core/tracing.py).
    trace_context: Mapped[dict[str, str] | None] = mapped_column(JSONB)

"""The transactional outbox: background work recorded in the same transaction as the write."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Identity, Index, Integer, String, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from backend_app.core.logging import MAX_REQUEST_ID_LENGTH
from backend_app.db.base import Base, CreatedAtMixin


class OutboxMessage(CreatedAtMixin, Base):
    __tablename__ = "outbox_messages"
    __table_args__ = (
        # The relay's claim query reads only unsent rows, oldest first.
        Index("ix_outbox_messages_unsent", "available_at", "id", postgresql_where=text("sent_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    task_id: Mapped[str] = mapped_column(
        String(100), ForeignKey("task_records.id", ondelete="CASCADE"), nullable=False, index=True
    )
    available_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)
    publish_attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The request id the relay publishes with (Celery header, RQ job meta): the task record's.
    request_id: Mapped[str | None] = mapped_column(String(MAX_REQUEST_ID_LENGTH))
    # The trace context the relay's publish span continues (the task record's, as request_id).
    trace_context: Mapped[dict[str, str] | None] = mapped_column(JSONB)

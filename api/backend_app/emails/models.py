"""One row per email a task sends, so a redelivered task never sends it twice."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import DateTime, Enum, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from backend_app.db.base import Base, CreatedAtMixin


class DeliveryStatus(enum.StrEnum):
    sending = "sending"  # an attempt is talking to the SMTP server; see handed_over_at
    sent = "sent"
    failed = "failed"


class EmailDelivery(CreatedAtMixin, Base):
    __tablename__ = "email_deliveries"

    # The task id: one delivery per task, whatever the number of attempts.
    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    recipient: Mapped[str] = mapped_column(String(320), nullable=False)
    subject: Mapped[str] = mapped_column(String(300), nullable=False)
    status: Mapped[DeliveryStatus] = mapped_column(
        Enum(DeliveryStatus, native_enum=False, length=10, values_callable=lambda e: [m.value for m in e]),
        nullable=False,
    )
    message_id: Mapped[str] = mapped_column(String(200), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )
    last_error: Mapped[str | None] = mapped_column(Text)
    # When the message body started towards the server (after its DATA go-ahead): from here
    # until the server's answer is recorded, the outcome of a dead attempt is unknown.
    handed_over_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

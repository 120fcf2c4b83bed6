"""Uploaded videos and what processing made of them."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Enum, Float, ForeignKey, Identity, Integer, String, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from backend_app.db.base import Base, CreatedAtMixin


class VideoStatus(enum.StrEnum):
    """A video's processing: `uploaded` (waiting), `processing`, then `ready` or `failed`."""

    uploaded = "uploaded"
    processing = "processing"
    ready = "ready"
    failed = "failed"


class Video(CreatedAtMixin, Base):
    __tablename__ = "videos"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    owner_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    # The client's name for the file, kept only as metadata; files are stored under our own names.
    original_filename: Mapped[str] = mapped_column(String(255), nullable=False)
    stored_path: Mapped[str] = mapped_column(String(500), nullable=False)
    # Names the public media folder, so others' videos cannot be found by counting ids.
    media_key: Mapped[str] = mapped_column(String(32), nullable=False, default=lambda: uuid.uuid4().hex)
    size_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[VideoStatus] = mapped_column(
        Enum(VideoStatus, native_enum=False, length=12, values_callable=lambda e: [m.value for m in e]),
        nullable=False,
    )
    progress: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    renditions: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, nullable=False, server_default="[]")
    thumbnail_path: Mapped[str | None] = mapped_column(String(500))
    task_id: Mapped[str | None] = mapped_column(String(100))
    error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )

"""Job postings and the applications to them."""

from __future__ import annotations

import enum
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Computed,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column

from backend_app.db.base import Base, CreatedAtMixin


class Job(CreatedAtMixin, Base):
    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint("salary_min IS NULL OR salary_max IS NULL OR salary_min <= salary_max", name="salary_range"),
        Index("ix_jobs_search", "search", postgresql_using="gin"),
        Index("ix_jobs_open_created", "closed_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    employer_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    title: Mapped[str] = mapped_column(String(200), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False)
    location: Mapped[str] = mapped_column(String(200), nullable=False)
    salary_min: Mapped[int | None] = mapped_column(Integer)
    salary_max: Mapped[int | None] = mapped_column(Integer)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    # Full-text search over title (weighted higher) and description, kept by PostgreSQL.
    @property
    def is_open(self) -> bool:
        """Taking applications: not closed by its employer and not past its expiry."""
        return self.closed_at is None and (self.expires_at is None or self.expires_at > datetime.now(UTC))

    search: Mapped[str] = mapped_column(
        TSVECTOR,
        Computed(
            "setweight(to_tsvector('english', coalesce(title, '')), 'A') || "
            "setweight(to_tsvector('english', coalesce(description, '')), 'B')",
            persisted=True,
        ),
        deferred=True,
    )


class ApplicationStatus(enum.StrEnum):
    """An application's stage. The job's employer moves it; only the applicant withdraws it."""

    submitted = "submitted"
    reviewed = "reviewed"
    interview = "interview"
    rejected = "rejected"
    hired = "hired"
    withdrawn = "withdrawn"


class Application(CreatedAtMixin, Base):
    __tablename__ = "applications"
    __table_args__ = (
        UniqueConstraint("job_id", "applicant_id"),
        CheckConstraint(
            "status IN ('submitted', 'reviewed', 'interview', 'rejected', 'hired', 'withdrawn')", name="status"
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    job_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False)
    applicant_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    cover_letter: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(
        String(20),
        nullable=False,
        server_default=ApplicationStatus.submitted.value,
        default=ApplicationStatus.submitted,
    )
    status_changed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

"""Accounts. Job seekers apply to jobs; employers post them."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Enum,
    Identity,
    Index,
    Integer,
    String,
    false,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from backend_app.auth.models import SingleUseTokenMixin
from backend_app.db.base import Base, CreatedAtMixin


class UserRole(enum.StrEnum):
    """What an account is for: a `job_seeker` applies to jobs, an `employer` posts them. Chosen at registration."""

    job_seeker = "job_seeker"
    employer = "employer"


class User(CreatedAtMixin, Base):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint("role IN ('job_seeker', 'employer')", name="role"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), nullable=False)
    username: Mapped[str] = mapped_column(String(50), nullable=False)
    first_name: Mapped[str] = mapped_column(String(100), nullable=False)
    last_name: Mapped[str] = mapped_column(String(100), nullable=False)
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    role: Mapped[UserRole] = mapped_column(
        Enum(UserRole, native_enum=False, length=20, values_callable=lambda roles: [r.value for r in roles]),
        nullable=False,
    )
    # Operators: may read and requeue anyone's background tasks.
    is_admin: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=false(), default=False)
    # Access tokens carry the version they were issued under; a password reset or change
    # raises it, which ends every session opened before.
    token_version: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0", default=0)
    # Set when the owner of the address followed the verification link; until then the account
    # can sign in and read, but not post jobs, apply or message.
    email_verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Set when the account was deleted: its personal data is gone and it cannot sign in; the
    # row stays so that what others hold (messages received, applications to their jobs) keeps
    # a sender, shown as a deleted account.
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


# Case-insensitive uniqueness: "Ann@x.io" and "ann@x.io" are one account.
Index("uq_users_email", func.lower(User.email), unique=True)
Index("uq_users_username", func.lower(User.username), unique=True)


class EmailVerificationToken(SingleUseTokenMixin, Base):
    """A link sent to confirm an address."""

    __tablename__ = "email_verification_tokens"

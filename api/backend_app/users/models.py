"""Accounts. Job seekers apply to jobs; employers post them."""

from __future__ import annotations

import enum

from sqlalchemy import BigInteger, Boolean, CheckConstraint, Enum, Identity, Index, String, false, func
from sqlalchemy.orm import Mapped, mapped_column

from backend_app.core.database import Base, CreatedAtMixin


class UserRole(enum.StrEnum):
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


# Case-insensitive uniqueness: "Ann@x.io" and "ann@x.io" are one account.
Index("uq_users_email", func.lower(User.email), unique=True)
Index("uq_users_username", func.lower(User.username), unique=True)

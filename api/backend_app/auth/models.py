"""Sign-in sessions with their rotating refresh tokens, and password reset tokens. Every
token is stored only as a hash."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Identity, String, func
from sqlalchemy.orm import Mapped, mapped_column

from backend_app.db.base import Base, CreatedAtMixin


class SingleUseTokenMixin(CreatedAtMixin):
    """A token sent to an account's address (a reset or verification link): stored only as a
    hash, used once, with an expiry."""

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PasswordResetToken(SingleUseTokenMixin, Base):
    __tablename__ = "password_reset_tokens"


class AuthSession(CreatedAtMixin, Base):
    """One sign-in (a device or browser): its access tokens name it (`sid`), and its refresh
    tokens are one family. Signing out, or reusing a rotated refresh token, revokes it."""

    __tablename__ = "auth_sessions"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    # What the client said it was when it signed in (User-Agent, cut), shown in the session list.
    user_agent: Mapped[str | None] = mapped_column(String(300))
    last_used_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RefreshToken(CreatedAtMixin, Base):
    """A refresh token of a session. Each use rotates it (`rotated_at` set, a new one issued);
    a rotated token presented again means it leaked, and its whole session is revoked."""

    __tablename__ = "refresh_tokens"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    session_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("auth_sessions.id", ondelete="CASCADE"), nullable=False, index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    rotated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

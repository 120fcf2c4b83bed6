"""SQL for sign-in sessions, refresh tokens, password reset and email verification tokens
(accounts themselves are `users.repository`'s)."""

from __future__ import annotations

from sqlalchemy import and_, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from backend_app.auth.models import AuthSession, PasswordResetToken, RefreshToken
from backend_app.users.models import EmailVerificationToken, User


async def reset_token_for_update(session: AsyncSession, token_hash: str) -> PasswordResetToken | None:
    """The reset token with this hash, locked until the transaction ends (it is used once)."""
    return await session.scalar(
        select(PasswordResetToken).where(PasswordResetToken.token_hash == token_hash).with_for_update()
    )


async def use_up_reset_tokens(session: AsyncSession, user_id: int) -> None:
    """Mark every unused reset token of the user used (a password change or reset ends them)."""
    await session.execute(
        update(PasswordResetToken)
        .where(PasswordResetToken.user_id == user_id, PasswordResetToken.used_at.is_(None))
        .values(used_at=func.now())
    )


async def end_all_sessions(session: AsyncSession, user_id: int, *, except_session_id: int | None = None) -> None:
    """Revoke every open session of the user (but `except_session_id`): their refresh tokens
    stop working at once, their access tokens at their next request."""
    statement = update(AuthSession).where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None))
    if except_session_id is not None:
        statement = statement.where(AuthSession.id != except_session_id)
    await session.execute(statement.values(revoked_at=func.now()))


# Built once: every signed-in request runs it, and building a statement (its expressions and
# its cache key) cost more than a tenth of `POST /api/messages`'s CPU (issue 15's profile).
_USER_WITH_SESSION = (
    select(User, AuthSession)
    .outerjoin(AuthSession, and_(AuthSession.id == bindparam("session_id"), AuthSession.user_id == User.id))
    .where(User.id == bindparam("user_id"))
)


async def user_with_session(
    session: AsyncSession, user_id: int, session_id: int | None
) -> tuple[User | None, AuthSession | None]:
    """The account and, when `session_id` is given, its sign-in session of that id, in one
    statement (every signed-in request runs it)."""
    if session_id is None:
        return await session.get(User, user_id), None
    row = (await session.execute(_USER_WITH_SESSION, {"user_id": user_id, "session_id": session_id})).first()
    if row is None:
        return None, None
    return row[0], row[1]


async def session_for_update(session: AsyncSession, session_id: int) -> AuthSession | None:
    return await session.get(AuthSession, session_id, with_for_update=True)


async def refresh_token_for_update(session: AsyncSession, token_hash: str) -> RefreshToken | None:
    """The refresh token with this hash, locked until the transaction ends: of two refreshes
    with one token, the second waits and then finds it rotated."""
    return await session.scalar(select(RefreshToken).where(RefreshToken.token_hash == token_hash).with_for_update())


async def retire_refresh_tokens(session: AsyncSession, session_id: int) -> None:
    """Mark every live refresh token of the session rotated (a new one replaces them all)."""
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.session_id == session_id, RefreshToken.rotated_at.is_(None))
        .values(rotated_at=func.now())
    )


async def active_sessions(
    session: AsyncSession, user_id: int, *, limit: int, offset: int
) -> tuple[list[AuthSession], int]:
    """The user's sessions that are neither revoked nor expired, the last used first."""
    condition = and_(
        AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None), AuthSession.expires_at > func.now()
    )
    total = await session.scalar(select(func.count()).select_from(AuthSession).where(condition)) or 0
    found = await session.scalars(
        select(AuthSession)
        .where(condition)
        .order_by(AuthSession.last_used_at.desc(), AuthSession.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(found.all()), total


async def verification_token_for_update(session: AsyncSession, token_hash: str) -> EmailVerificationToken | None:
    """The verification token with this hash, locked until the transaction ends (used once)."""
    return await session.scalar(
        select(EmailVerificationToken).where(EmailVerificationToken.token_hash == token_hash).with_for_update()
    )


async def use_up_verification_tokens(session: AsyncSession, user_id: int) -> None:
    """Mark every unused verification link of the user used (the address is confirmed)."""
    await session.execute(
        update(EmailVerificationToken)
        .where(EmailVerificationToken.user_id == user_id, EmailVerificationToken.used_at.is_(None))
        .values(used_at=func.now())
    )

"""Registration, sign-in sessions and their refresh tokens, sign-out, password reset and
change, email verification: the account rules."""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from backend_app.auth import repository
from backend_app.auth.models import AuthSession, PasswordResetToken, RefreshToken
from backend_app.auth.schemas import SessionOut, TokenPair
from backend_app.core import rate_limit
from backend_app.core.config import get_settings
from backend_app.core.security import (
    AccessToken,
    create_access_token,
    hash_password,
    hash_token,
    new_secret_token,
    password_needs_rehash,
    verify_password,
)
from backend_app.db.sessions import AsyncWriteSession
from backend_app.emails import tasks as email_tasks
from backend_app.outbox import service as outbox
from backend_app.users import repository as users
from backend_app.users.models import EmailVerificationToken, User
from backend_app.users.schemas import Registration

logger = logging.getLogger(__name__)

USER_AGENT_MAX_LENGTH = 300
# New verification links one account may ask for (each is an email to an address nobody has
# confirmed yet, so this also caps what a sign-up can make us send to a stranger).
VERIFICATION_EMAILS_PER_ACCOUNT = "3/hour"


class Conflict(Exception):
    pass


class WeakPassword(ValueError):
    pass


class InvalidCredentials(Exception):
    pass


class InvalidResetToken(Exception):
    pass


class InvalidRefreshToken(Exception):
    """Unknown, or its session is revoked or expired."""


class RefreshTokenReused(Exception):
    """A rotated refresh token came back: its session has been revoked (commit, then refuse)."""


class NoSuchSession(Exception):
    pass


class InvalidVerificationToken(Exception):
    """Unknown, used or expired."""


class AlreadyVerified(Exception):
    pass


def check_password_strength(password: str, *, email: str, username: str) -> None:
    if len(password) < 10:
        raise WeakPassword("Password must be at least 10 characters long.")
    if not re.search(r"[A-Za-z]", password) or not re.search(r"[^A-Za-z]", password):
        raise WeakPassword("Password must mix letters with digits or symbols.")
    lowered = password.lower()
    if username.lower() in lowered or email.split("@")[0].lower() in lowered:
        raise WeakPassword("Password must not contain your username or email.")


def display_name(user: User) -> str:
    return f"{user.first_name} {user.last_name}".strip()


async def register(*, session: AsyncWriteSession, registration: Registration) -> User:
    check_password_strength(registration.password, email=registration.email, username=registration.username)
    if await users.get_by_email(session, registration.email):
        raise Conflict("An account with this email already exists.")
    if await users.username_taken(session, registration.username):
        raise Conflict("This username is taken.")
    user = User(
        email=registration.email.lower(),
        username=registration.username,
        first_name=registration.first_name,
        last_name=registration.last_name,
        password_hash=await asyncio.to_thread(hash_password, registration.password),
        role=registration.role,
    )
    session.add(user)
    try:
        await session.flush()
    except IntegrityError:
        # Two registrations raced past the checks above; the unique index decided.
        raise Conflict("An account with this email or username already exists.") from None
    # The verification email is the sign-up email (it welcomes the user too). Its key stays the
    # welcome email's: operators and the soak follow a sign-up's email by `welcome-email-{id}`.
    await _send_verification_link(session, user, idempotency_key=f"welcome-email-{user.id}")
    return user


async def _send_verification_link(session: AsyncWriteSession, user: User, *, idempotency_key: str | None) -> None:
    """A new single-use link that confirms the account's address, by email (earlier links stay
    valid until they expire or one of them is used)."""
    token, token_hash = new_secret_token()
    lifetime = timedelta(minutes=get_settings().email_verification_token_minutes)
    link = EmailVerificationToken(user_id=user.id, token_hash=token_hash, expires_at=datetime.now(UTC) + lifetime)
    session.add(link)
    await session.flush()
    await outbox.add(
        session,
        email_tasks.send_verification_email.call(
            user_email=user.email, user_name=display_name(user), verification_token=token
        ),
        idempotency_key=idempotency_key or f"verification-email-{link.id}",
        owner_id=user.id,
    )


async def verify_email(*, session: AsyncWriteSession, token: str) -> User:
    """Confirm the address a verification link was sent to. A link works once, until it
    expires; using one uses up every other link of the account."""
    link = await repository.verification_token_for_update(session, hash_token(token))
    if link is None or link.used_at is not None or link.expires_at <= datetime.now(UTC):
        raise InvalidVerificationToken
    user = await users.get_for_update(session, link.user_id)
    if user is None:
        raise InvalidVerificationToken
    if user.email_verified_at is None:
        user.email_verified_at = datetime.now(UTC)
    await repository.use_up_verification_tokens(session, user.id)
    return user


async def resend_verification(*, session: AsyncWriteSession, user_id: int) -> None:
    """Email the account a new verification link: `AlreadyVerified` once confirmed, and at
    most VERIFICATION_EMAILS_PER_ACCOUNT (429 past it)."""
    user = await users.get(session, user_id)
    if user is None:
        raise InvalidCredentials
    if user.email_verified_at is not None:
        raise AlreadyVerified
    await rate_limit.hit(
        VERIFICATION_EMAILS_PER_ACCOUNT,
        "verification-email",
        str(user.id),
        detail="Too many verification emails for this account; try again later.",
    )
    await _send_verification_link(session, user, idempotency_key=None)


def _address_failures_limit() -> str:
    settings = get_settings()
    return f"{settings.login_max_failures}/{settings.login_failure_window_seconds} seconds"


async def authenticate(*, session: AsyncWriteSession, email: str, password: str, client_address: str) -> User:
    """The account for these credentials. Failed attempts are limited per client address
    (LOGIN_MAX_FAILURES in LOGIN_FAILURE_WINDOW_SECONDS) and per account, from any address
    (RATE_LIMIT_LOGIN_FAILURES_PER_ACCOUNT): spreading guesses over many addresses does not
    help, and an attacker can lock an account out of password sign-in only for the window."""
    settings = get_settings()
    account = email.lower()
    await rate_limit.check(
        _address_failures_limit(),
        "login-failures",
        client_address,
        detail="Too many failed sign-ins from this address; try again later.",
    )
    await rate_limit.check(
        settings.rate_limit_login_failures_per_account,
        "login-failures-account",
        account,
        detail="Too many failed sign-ins for this account; try again later.",
    )
    user = await users.get_by_email(session, email)
    # verify_password runs even for an unknown email, so timing does not reveal accounts.
    verified = await asyncio.to_thread(verify_password, password, user.password_hash if user else None)
    if not verified or user is None:
        await rate_limit.hit(_address_failures_limit(), "login-failures", client_address)
        await rate_limit.hit(settings.rate_limit_login_failures_per_account, "login-failures-account", account)
        raise InvalidCredentials
    if password_needs_rehash(user.password_hash):
        # Made under other ARGON2_* settings: renewed now, the one moment the password is known.
        user.password_hash = await asyncio.to_thread(hash_password, password)
    return user


def session_is_open(user: User | None, auth_session: AuthSession | None, token: AccessToken) -> bool:
    """Whether `token` still opens a session: the account exists, its password has not changed
    since (the token version), and the token's sign-in session is neither revoked nor expired.
    `auth_session` is the session the token names (None when it names none or it is missing)."""
    if user is None or user.token_version != token.version:
        return False
    if token.session_id is None:
        return True  # issued before sessions existed: only the version ends it
    return (
        auth_session is not None
        and auth_session.user_id == user.id
        and auth_session.revoked_at is None
        and auth_session.expires_at > datetime.now(UTC)
    )


async def token_is_current(session: AsyncSession, token: AccessToken) -> bool:
    """Whether `token` still opens a session, read in `session` (for routes that checked the
    token without the database first, such as uploads)."""
    return await user_of_open_session(session, token) is not None


async def user_of_open_session(session: AsyncSession, token: AccessToken) -> User | None:
    """The account `token` signs in, while its session is open (not signed out, not ended by a
    password change or reset), read in `session`."""
    user, auth_session = await repository.user_with_session(session, token.user_id, token.session_id)
    return user if session_is_open(user, auth_session, token) else None


async def end_every_session(session: AsyncWriteSession, user_id: int) -> None:
    """Sign the account out everywhere: every session is revoked, and the token version goes
    up so access tokens that name no session (issued before sessions existed) end too."""
    user = await users.get_for_update(session, user_id)
    if user is not None:
        user.token_version += 1
    await repository.end_all_sessions(session, user_id)


def _session_lifetime() -> timedelta:
    return timedelta(days=get_settings().refresh_token_expire_days)


async def open_session(*, session: AsyncWriteSession, user: User, user_agent: str | None) -> TokenPair:
    """Sign `user` in on a new session (a device or browser) and answer its first token pair."""
    now = datetime.now(UTC)
    auth_session = AuthSession(
        user_id=user.id,
        # Shown in the session list; PostgreSQL text holds no NUL.
        user_agent=user_agent.replace("\x00", "")[:USER_AGENT_MAX_LENGTH] if user_agent else None,
        last_used_at=now,
        expires_at=now + _session_lifetime(),
    )
    session.add(auth_session)
    await session.flush()
    return _token_pair(session, user, auth_session, now)


def _token_pair(session: AsyncWriteSession, user: User, auth_session: AuthSession, now: datetime) -> TokenPair:
    """A new access token and a new refresh token (the session's only live one) for the session."""
    refresh_token, refresh_hash = new_secret_token()
    session.add(RefreshToken(session_id=auth_session.id, token_hash=refresh_hash))
    access_minutes = get_settings().access_token_expire_minutes
    return TokenPair(
        access_token=create_access_token(user.id, token_version=user.token_version, session_id=auth_session.id),
        expires_in=access_minutes * 60,
        refresh_token=refresh_token,
        refresh_expires_in=max(0, int((auth_session.expires_at - now).total_seconds())),
    )


async def refresh(*, session: AsyncWriteSession, refresh_token: str) -> TokenPair:
    """Trade a refresh token for a new pair on the same session; the token is used up (rotated)
    and the session's lifetime starts again. A rotated token presented again was copied: the
    session is revoked (`RefreshTokenReused`, which the caller must commit before answering)."""
    stored = await repository.refresh_token_for_update(session, hash_token(refresh_token))
    if stored is None:
        raise InvalidRefreshToken
    auth_session = await repository.session_for_update(session, stored.session_id)
    now = datetime.now(UTC)
    if auth_session is None or auth_session.revoked_at is not None or auth_session.expires_at <= now:
        raise InvalidRefreshToken
    if stored.rotated_at is not None:
        auth_session.revoked_at = now
        logger.warning(
            "a rotated refresh token was presented again: session %s of user %s revoked",
            auth_session.id,
            auth_session.user_id,
        )
        raise RefreshTokenReused
    user = await users.get(session, auth_session.user_id)
    if user is None:
        raise InvalidRefreshToken
    stored.rotated_at = now
    auth_session.last_used_at = now
    auth_session.expires_at = now + _session_lifetime()
    return _token_pair(session, user, auth_session, now)


async def sign_out(*, session: AsyncWriteSession, token: AccessToken, all_sessions: bool) -> None:
    """End the token's session, or every session of the account. A token that names no session
    (issued before sessions existed) can only be ended with all of them."""
    if all_sessions or token.session_id is None:
        await end_every_session(session, token.user_id)
        return
    auth_session = await repository.session_for_update(session, token.session_id)
    if auth_session is not None and auth_session.user_id == token.user_id and auth_session.revoked_at is None:
        auth_session.revoked_at = datetime.now(UTC)


async def list_sessions(
    *, session: AsyncSession, token: AccessToken, limit: int, offset: int
) -> tuple[list[SessionOut], int]:
    """The caller's open sessions, the last used first, the caller's own marked `current`."""
    found, total = await repository.active_sessions(session, token.user_id, limit=limit, offset=offset)
    items = [
        SessionOut(
            id=s.id,
            user_agent=s.user_agent,
            created_at=s.created_at,
            last_used_at=s.last_used_at,
            expires_at=s.expires_at,
            current=s.id == token.session_id,
        )
        for s in found
    ]
    return items, total


async def revoke_session(*, session: AsyncWriteSession, user_id: int, session_id: int) -> None:
    """Sign out one of the account's sessions (another account's is `NoSuchSession`)."""
    auth_session = await repository.session_for_update(session, session_id)
    if auth_session is None or auth_session.user_id != user_id:
        raise NoSuchSession
    if auth_session.revoked_at is None:
        auth_session.revoked_at = datetime.now(UTC)


async def request_password_reset(*, session: AsyncWriteSession, email: str, client_address: str) -> None:
    """Queue a reset email if the account exists; callers answer the same either way. At most
    RATE_LIMIT_PASSWORD_RESET_PER_ADDRESS requests from one address (429), and at most
    RATE_LIMIT_PASSWORD_RESET_PER_EMAIL emails to one address (past it, nothing is sent and
    the answer is the same, so the limit reveals nothing about the account)."""
    settings = get_settings()
    await rate_limit.hit(
        settings.rate_limit_password_reset_per_address,
        "password-reset",
        client_address,
        detail="Too many password reset requests from this address; try again later.",
    )
    if not await rate_limit.allows(settings.rate_limit_password_reset_per_email, "password-reset-email", email.lower()):
        return
    await rate_limit.hit(settings.rate_limit_password_reset_per_email, "password-reset-email", email.lower())
    user = await users.get_by_email(session, email)
    if user is None:
        return
    token, token_hash = new_secret_token()
    lifetime = timedelta(minutes=get_settings().password_reset_token_minutes)
    reset = PasswordResetToken(user_id=user.id, token_hash=token_hash, expires_at=datetime.now(UTC) + lifetime)
    session.add(reset)
    await session.flush()
    await outbox.add(
        session,
        email_tasks.send_password_reset_email.call(
            user_email=user.email, user_name=display_name(user), reset_token=token
        ),
        idempotency_key=f"password-reset-{reset.id}",
        owner_id=user.id,
    )


async def reset_password(*, session: AsyncWriteSession, token: str, new_password: str) -> None:
    reset = await repository.reset_token_for_update(session, hash_token(token))
    if reset is None or reset.used_at is not None or reset.expires_at <= datetime.now(UTC):
        raise InvalidResetToken
    user = await users.get(session, reset.user_id)
    if user is None:
        raise InvalidResetToken
    check_password_strength(new_password, email=user.email, username=user.username)
    await _replace_password(session, user, new_password)
    await repository.end_all_sessions(session, user.id)
    reset.used_at = datetime.now(UTC)


async def change_password(
    *,
    session: AsyncWriteSession,
    token: AccessToken,
    current_password: str,
    new_password: str,
    user_agent: str | None,
) -> TokenPair:
    """Set a new password when the current one is right. Every other session ends, and so does
    every outstanding reset link; the answer is a new token pair for the caller's own session
    (a new session when the token names none). Wrong current passwords count against the
    account's sign-in failures (a stolen session cannot guess it at leisure)."""
    user = await users.get_for_update(session, token.user_id)
    if user is None:
        raise InvalidCredentials
    limit = get_settings().rate_limit_login_failures_per_account
    detail = "Too many failed attempts for this account; try again later."
    await rate_limit.check(limit, "login-failures-account", user.email, detail=detail)
    if not await asyncio.to_thread(verify_password, current_password, user.password_hash):
        await rate_limit.hit(limit, "login-failures-account", user.email)
        raise InvalidCredentials
    check_password_strength(new_password, email=user.email, username=user.username)
    await _replace_password(session, user, new_password)
    await repository.end_all_sessions(session, user.id, except_session_id=token.session_id)
    current = await repository.session_for_update(session, token.session_id) if token.session_id else None
    now = datetime.now(UTC)
    if current is None or current.user_id != user.id or current.revoked_at is not None or current.expires_at <= now:
        return await open_session(session=session, user=user, user_agent=user_agent)
    # Its earlier refresh tokens could be in the wrong hands too; presenting one now is reuse.
    await repository.retire_refresh_tokens(session, current.id)
    current.last_used_at = now
    current.expires_at = now + _session_lifetime()
    return _token_pair(session, user, current, now)


async def _replace_password(session: AsyncWriteSession, user: User, new_password: str) -> None:
    """The new password's hash; every access token issued before stops working (the token
    version goes up) and so does every outstanding reset link."""
    user.password_hash = await asyncio.to_thread(hash_password, new_password)
    user.token_version += 1
    await repository.use_up_reset_tokens(session, user.id)

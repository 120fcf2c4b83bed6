"""Registration, sign-in, password reset: the account rules."""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import UTC, datetime, timedelta

from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from backend_app.auth.models import PasswordResetToken
from backend_app.core import rq_app
from backend_app.core.config import get_settings
from backend_app.core.read_replica import AsyncWriteSession
from backend_app.core.security import hash_password, hash_reset_token, new_reset_token, verify_password
from backend_app.outbox import service as outbox
from backend_app.tasks.models import TaskBackend
from backend_app.users import repository as users
from backend_app.users.models import User
from backend_app.users.schemas import Registration

logger = logging.getLogger(__name__)

EMAIL_TASKS = "backend_app.core.celery_tasks"


class Conflict(Exception):
    pass


class WeakPassword(ValueError):
    pass


class InvalidCredentials(Exception):
    pass


class TooManyAttempts(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


class InvalidResetToken(Exception):
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
    await outbox.add(
        session=session,
        backend=TaskBackend.celery,
        queue="emails",
        task=f"{EMAIL_TASKS}.send_welcome_email",
        kwargs={"user_email": user.email, "user_name": display_name(user), "username": user.username},
        idempotency_key=f"welcome-email-{user.id}",
        owner_id=user.id,
    )
    return user


def _failure_key(client_address: str) -> str:
    return f"login-failures:{client_address}"


def _failures_retry_after(client_address: str) -> int | None:
    """Seconds until this address may try again, or None. Fails open when Redis is down."""
    settings = get_settings()
    try:
        redis = rq_app.get_redis()
        failures = int(redis.get(_failure_key(client_address)) or 0)
        if failures < settings.login_max_failures:
            return None
        return max(int(redis.ttl(_failure_key(client_address))), 1)
    except RedisError as error:
        logger.warning("login throttle unavailable (%s); not throttling", type(error).__name__)
        return None


def _count_failure(client_address: str) -> None:
    settings = get_settings()
    try:
        redis = rq_app.get_redis()
        with redis.pipeline() as pipeline:
            pipeline.incr(_failure_key(client_address))
            pipeline.expire(_failure_key(client_address), settings.login_failure_window_seconds, nx=True)
            pipeline.execute()
    except RedisError as error:
        logger.warning("could not count a failed login (%s)", type(error).__name__)


async def authenticate(*, session: AsyncWriteSession, email: str, password: str, client_address: str) -> User:
    retry_after = await asyncio.to_thread(_failures_retry_after, client_address)
    if retry_after is not None:
        raise TooManyAttempts(retry_after)
    user = await users.get_by_email(session, email)
    # verify_password runs even for an unknown email, so timing does not reveal accounts.
    verified = await asyncio.to_thread(verify_password, password, user.password_hash if user else None)
    if not verified or user is None:
        await asyncio.to_thread(_count_failure, client_address)
        raise InvalidCredentials
    return user


async def request_password_reset(*, session: AsyncWriteSession, email: str) -> None:
    """Queue a reset email if the account exists; callers answer the same either way."""
    user = await users.get_by_email(session, email)
    if user is None:
        return
    token, token_hash = new_reset_token()
    lifetime = timedelta(minutes=get_settings().password_reset_token_minutes)
    reset = PasswordResetToken(user_id=user.id, token_hash=token_hash, expires_at=datetime.now(UTC) + lifetime)
    session.add(reset)
    await session.flush()
    await outbox.add(
        session=session,
        backend=TaskBackend.celery,
        queue="emails",
        task=f"{EMAIL_TASKS}.send_password_reset_email",
        kwargs={"user_email": user.email, "user_name": display_name(user), "reset_token": token},
        idempotency_key=f"password-reset-{reset.id}",
        owner_id=user.id,
    )


async def reset_password(*, session: AsyncWriteSession, token: str, new_password: str) -> None:
    reset = await session.scalar(
        select(PasswordResetToken).where(PasswordResetToken.token_hash == hash_reset_token(token)).with_for_update()
    )
    if reset is None or reset.used_at is not None or reset.expires_at <= datetime.now(UTC):
        raise InvalidResetToken
    user = await session.get(User, reset.user_id)
    if user is None:
        raise InvalidResetToken
    check_password_strength(new_password, email=user.email, username=user.username)
    user.password_hash = await asyncio.to_thread(hash_password, new_password)
    reset.used_at = datetime.now(UTC)

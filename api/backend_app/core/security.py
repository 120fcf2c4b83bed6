"""Password hashing (argon2id), access tokens (JWT, HS256 with SECRET_KEY), and the random
tokens that are stored only as a hash (refresh, password reset, email verification)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from backend_app.core.config import get_settings

ALGORITHM = "HS256"


@cache
def _hasher() -> PasswordHasher:
    """argon2id with the ARGON2_* settings (OWASP's minimum by default). A hash records its own
    parameters, so hashes made under other settings still verify (and are renewed at sign-in)."""
    settings = get_settings()
    return PasswordHasher(
        time_cost=settings.argon2_time_cost,
        memory_cost=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
    )


@cache
def _dummy_hash() -> str:
    # Verified against when the email is unknown, so both failures take the same time.
    return _hasher().hash("not-a-real-password")


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def verify_password(password: str, password_hash: str | None) -> bool:
    try:
        return _hasher().verify(password_hash or _dummy_hash(), password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def password_needs_rehash(password_hash: str) -> bool:
    """Whether a hash that just verified was made with other parameters than the settings'."""
    return _hasher().check_needs_rehash(password_hash)


def new_secret_token() -> tuple[str, str]:
    """A random token for the client (a refresh token, a link in an email), and the SHA-256
    hash that is stored: a copy of the table opens nothing."""
    token = secrets.token_urlsafe(32)
    return token, hash_token(token)


def hash_token(token: str) -> str:
    """What a random token is stored and looked up as (it has 256 bits: no salt needed)."""
    return hashlib.sha256(token.encode()).hexdigest()


class InvalidTokenError(Exception):
    """The token is malformed, tampered with or expired."""


@dataclass(frozen=True)
class AccessToken:
    user_id: int
    # The user's token version when the token was issued: a password reset or change raises
    # the user's, and every token issued before stops working (tokens from before versions
    # existed count as version 0).
    version: int
    # The sign-in session (`auth_sessions.id`) the token belongs to: signing it out ends the
    # token. None for tokens issued before sessions existed, which only the version ends.
    session_id: int | None = None


def create_access_token(
    user_id: int, *, token_version: int = 0, session_id: int | None = None, expires_in: timedelta | None = None
) -> str:
    settings = get_settings()
    now = datetime.now(UTC)
    lifetime = expires_in or timedelta(minutes=settings.access_token_expire_minutes)
    claims: dict[str, object] = {
        "sub": str(user_id),
        "ver": token_version,
        "iat": now,
        "exp": now + lifetime,
        "type": "access",
    }
    if session_id is not None:
        claims["sid"] = session_id
    return jwt.encode(claims, settings.secret_key, algorithm=ALGORITHM)


def read_access_token(token: str) -> AccessToken:
    """The user id, token version and session id in a valid access token."""
    try:
        claims = jwt.decode(
            token, get_settings().secret_key, algorithms=[ALGORITHM], options={"require": ["sub", "exp"]}
        )
        if claims.get("type") != "access":
            raise InvalidTokenError("not an access token")
        version = claims.get("ver", 0)
        if not isinstance(version, int):
            raise InvalidTokenError("malformed token version")
        session_id = claims.get("sid")
        if session_id is not None and (not isinstance(session_id, int) or isinstance(session_id, bool)):
            raise InvalidTokenError("malformed session id")
        return AccessToken(user_id=int(claims["sub"]), version=version, session_id=session_id)
    except (jwt.PyJWTError, ValueError) as error:
        raise InvalidTokenError(str(error)) from error


def decode_access_token(token: str) -> int:
    """The user id in a valid access token (its version unchecked: see `read_access_token`)."""
    return read_access_token(token).user_id

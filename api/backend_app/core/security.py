"""Password hashing (argon2id), access tokens (JWT, HS256 with SECRET_KEY), and the random
tokens that are stored only as a hash (refresh, password reset, email verification)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache, lru_cache

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


# Verified tokens kept per process: a client sends the same token for up to its 15 minutes,
# and checking the signature and parsing the claims again each time was 4.5 % of a signed-in
# write's CPU time. Only tokens that verified are kept (an exception is never cached), so a
# client sending junk cannot fill it; the expiry is still checked on every call.
VERIFIED_TOKENS_KEPT = 4096


def read_access_token(token: str) -> AccessToken:
    """The user id, token version and session id in a valid access token."""
    access, expires = _verified_access_token(token, get_settings().secret_key)
    if expires <= datetime.now(UTC).timestamp():
        raise InvalidTokenError("Signature has expired")
    return access


@lru_cache(maxsize=VERIFIED_TOKENS_KEPT)
def _verified_access_token(token: str, secret_key: str) -> tuple[AccessToken, float]:
    """The token's claims once its signature and shape check out, and when it expires."""
    try:
        claims = jwt.decode(
            token,
            secret_key,
            algorithms=[ALGORITHM],
            options={"require": ["sub", "exp"], "verify_exp": False},  # checked by the caller
        )
        if claims.get("type") != "access":
            raise InvalidTokenError("not an access token")
        version = claims.get("ver", 0)
        if not isinstance(version, int):
            raise InvalidTokenError("malformed token version")
        session_id = claims.get("sid")
        if session_id is not None and (not isinstance(session_id, int) or isinstance(session_id, bool)):
            raise InvalidTokenError("malformed session id")
        expires = claims["exp"]
        if not isinstance(expires, int | float) or isinstance(expires, bool):
            raise InvalidTokenError("malformed expiry")
        return AccessToken(user_id=int(claims["sub"]), version=version, session_id=session_id), float(expires)
    except (jwt.PyJWTError, ValueError) as error:
        raise InvalidTokenError(str(error)) from error


def decode_access_token(token: str) -> int:
    """The user id in a valid access token (its version unchecked: see `read_access_token`)."""
    return read_access_token(token).user_id

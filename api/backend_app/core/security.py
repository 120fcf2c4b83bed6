"""Password hashing (argon2id), access tokens (JWT, HS256 with SECRET_KEY), reset tokens."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from backend_app.core.config import get_settings

ALGORITHM = "HS256"
_hasher = PasswordHasher()
# Verified against when the email is unknown, so both failures take the same time.
_DUMMY_HASH = _hasher.hash("not-a-real-password")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password: str, password_hash: str | None) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def new_reset_token() -> tuple[str, str]:
    """A random single-use token for the email, and the SHA-256 hash that is stored."""
    token = secrets.token_urlsafe(32)
    return token, hash_reset_token(token)


def hash_reset_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class InvalidTokenError(Exception):
    """The token is malformed, tampered with or expired."""


def create_access_token(user_id: int, *, expires_in: timedelta | None = None) -> str:
    settings = get_settings()
    now = datetime.now(UTC)
    lifetime = expires_in or timedelta(minutes=settings.access_token_expire_minutes)
    claims = {"sub": str(user_id), "iat": now, "exp": now + lifetime, "type": "access"}
    return jwt.encode(claims, settings.secret_key, algorithm=ALGORITHM)


def decode_access_token(token: str) -> int:
    """The user id in a valid access token."""
    try:
        claims = jwt.decode(
            token, get_settings().secret_key, algorithms=[ALGORITHM], options={"require": ["sub", "exp"]}
        )
        if claims.get("type") != "access":
            raise InvalidTokenError("not an access token")
        return int(claims["sub"])
    except (jwt.PyJWTError, ValueError) as error:
        raise InvalidTokenError(str(error)) from error

"""Access tokens (JWT, HS256, signed with SECRET_KEY)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt

from backend_app.core.config import get_settings

ALGORITHM = "HS256"


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

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from backend_app.core.openapi import JsonBool, text
from backend_app.core.pagination import page_example
from backend_app.users.schemas import Email, Password

# A token as we hand them out (43 URL-safe characters); the bounds only keep junk short.
Token = text(min_length=1, max_length=200)


class Credentials(BaseModel):
    """An email address and password to sign in with (`POST /api/auth/login`)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"email": "ada@example.com", "password": "correct-horse-42"}]}
    )

    email: Email
    password: str = Field(min_length=1, max_length=128)


class TokenPair(BaseModel):
    """A signed-in session's tokens: send `access_token` as `Authorization: Bearer ...`; when it
    expires, trade `refresh_token` at POST /api/auth/refresh for a new pair (each refresh token
    works once)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "access_token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI0MiJ9.c2lnbmF0dXJl",
                    "token_type": "bearer",
                    "expires_in": 900,
                    "refresh_token": "Hr4m2QyJx0c7bV1sZ9kWnL3pD5tG8aE6uY2oI4fK0qM",
                    "refresh_expires_in": 2592000,
                }
            ]
        }
    )

    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth2 token type, not a secret
    expires_in: int = Field(description="seconds until the access token expires")
    refresh_token: str
    refresh_expires_in: int = Field(description="seconds until the session ends unless refreshed before")


class RefreshRequest(BaseModel):
    """The refresh token of a session, traded for a new token pair (`POST /api/auth/refresh`); each works once."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"refresh_token": "Hr4m2QyJx0c7bV1sZ9kWnL3pD5tG8aE6uY2oI4fK0qM"}]},
    )

    refresh_token: Token


class SignOut(BaseModel):
    """What to sign out (`POST /api/auth/logout`): this session only, or every session of the account. The body may be
    left out."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"all_sessions": False}]})

    all_sessions: JsonBool = Field(default=False, description="sign out on every device, not only this one")


SESSION_EXAMPLE = {
    "id": 7,
    "user_agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X)",
    "created_at": "2025-03-14T09:26:53Z",
    "last_used_at": "2025-03-20T18:02:11Z",
    "expires_at": "2025-04-19T18:02:11Z",
    "current": True,
}


class SessionOut(BaseModel):
    """A signed-in device or browser."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={"examples": [SESSION_EXAMPLE]},
    )

    id: int
    user_agent: str | None = Field(description="the client's User-Agent when it signed in")
    created_at: datetime
    last_used_at: datetime = Field(description="when it signed in or last refreshed its tokens")
    expires_at: datetime = Field(description="when it ends unless refreshed before")
    current: bool = Field(description="the session of the access token that asked")


class SessionPage(BaseModel):
    """A page of your open sessions: `items` from `offset`, at most `limit` of them, out of `total`."""

    model_config = ConfigDict(json_schema_extra={"examples": [page_example(SESSION_EXAMPLE)]})

    items: list[SessionOut]
    total: int
    limit: int
    offset: int


class PasswordResetRequest(BaseModel):
    """The address to email a password reset link to (`POST /api/auth/password-reset`)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"email": "ada@example.com"}]})

    email: Email


class PasswordResetConfirm(BaseModel):
    """The token from a password reset email and the new password (the rules of registration)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"token": "Hr4m2QyJx0c7bV1sZ9kWnL3pD5tG8aE6uY2oI4fK0qM", "new_password": "battery-staple-97"}]
        },
    )

    token: str = Field(min_length=10, max_length=200)
    new_password: Password


class EmailVerification(BaseModel):
    """The token from the link in a verification email (`POST /api/auth/verify-email`)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"token": "Hr4m2QyJx0c7bV1sZ9kWnL3pD5tG8aE6uY2oI4fK0qM"}]}
    )

    token: Token

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from email_validator import SPECIAL_USE_DOMAIN_NAMES
from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field, StringConstraints, computed_field
from pydantic_core import PydanticCustomError

from backend_app.core.openapi import text
from backend_app.core.pagination import page_example
from backend_app.users.models import UserRole

USERNAME_PATTERN = r"^[A-Za-z0-9_.-]{3,50}$"

# Names end up in email headers; a line break there is header injection.
Name = text(min_length=1, max_length=100, single_line=True)
Username = Annotated[str, StringConstraints(pattern=USERNAME_PATTERN)]


def _any_case(word: str) -> str:
    return "".join(f"[{letter}{letter.upper()}]" for letter in word)


# An address at a special-use domain (RFC 6761: .test, .local, .invalid, ...) can receive no
# email, and EmailStr refuses it; the pattern states it in the schema.
Email = Annotated[
    EmailStr,
    Field(
        json_schema_extra={
            "pattern": rf"^(?![\s\S]*[@.](?:{'|'.join(map(_any_case, SPECIAL_USE_DOMAIN_NAMES))})$)",
        }
    ),
]

# Letters mixed with digits or symbols: somewhere a letter stands next to something else.
PASSWORD_MIX_PATTERN = r"[A-Za-z][^A-Za-z]|[^A-Za-z][A-Za-z]"  # noqa: S105 - a rule, not a password


def _mixes_letters(password: str) -> str:
    if not re.search(PASSWORD_MIX_PATTERN, password):
        raise PydanticCustomError("string_pattern_mismatch", "Password must mix letters with digits or symbols.")
    return password


# What auth.service.check_password_strength asks of a new password that one field can show;
# that it must not contain the username or the email's name is checked against the account.
Password = Annotated[
    str,
    Field(min_length=10, max_length=128, json_schema_extra={"pattern": PASSWORD_MIX_PATTERN}),
    AfterValidator(_mixes_letters),
]


USER_PUBLIC_EXAMPLE = {
    "id": 42,
    "username": "ada_l",
    "first_name": "Ada",
    "last_name": "Lovelace",
    "role": "job_seeker",
    "created_at": "2025-03-14T09:26:53Z",
}


class UserPublic(BaseModel):
    """What anyone signed in may see of an account."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={"examples": [USER_PUBLIC_EXAMPLE]},
    )

    id: int
    username: str
    first_name: str
    last_name: str
    role: UserRole
    created_at: datetime


class UserOut(UserPublic):
    """An account as its owner sees it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **USER_PUBLIC_EXAMPLE,
                    "email": "ada@example.com",
                    "is_admin": False,
                    "email_verified": True,
                }
            ]
        }
    )

    email: EmailStr
    is_admin: bool
    email_verified_at: datetime | None = Field(default=None, exclude=True)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def email_verified(self) -> bool:
        """Whether the owner of the address followed the verification link."""
        return self.email_verified_at is not None


class UserUpdate(BaseModel):
    """Changes to your profile (`PATCH /api/users/me`): send only the fields that change; a null or absent field stays
    as it is. A username is 3-50 letters, digits, `_`, `.` or `-`, unique regardless of case."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"first_name": "Augusta Ada", "username": "ada.lovelace"}]}
    )

    username: Username | None = None
    first_name: Name | None = None
    last_name: Name | None = None


class UserPage(BaseModel):
    """A page of accounts: `items` from `offset`, at most `limit` of them, out of `total`."""

    model_config = ConfigDict(json_schema_extra={"examples": [page_example(USER_PUBLIC_EXAMPLE)]})

    items: list[UserPublic]
    total: int
    limit: int
    offset: int


class Registration(BaseModel):
    """A new account (`POST /api/auth/register`). The password is 10-128 characters mixing letters with digits or
    symbols, and must not contain the username or the part of the email before `@`; `role` is `job_seeker` or
    `employer`."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "email": "ada@example.com",
                    "username": "ada_l",
                    "password": "correct-horse-42",
                    "first_name": "Ada",
                    "last_name": "Lovelace",
                    "role": "job_seeker",
                }
            ]
        },
    )

    email: Email
    username: Username
    password: Password
    first_name: Name
    last_name: Name
    role: UserRole


class PasswordChange(BaseModel):
    """A new password for the signed-in account, with the current one; the new one follows the rules of registration."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"current_password": "correct-horse-42", "new_password": "battery-staple-97"}]},
    )

    current_password: str = Field(min_length=1, max_length=128)
    new_password: Password


class AccountDeletion(BaseModel):
    """Confirms deleting your account (`DELETE /api/users/me`) with its current password."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"password": "correct-horse-42"}]})

    password: str = Field(min_length=1, max_length=128, description="the account's current password")

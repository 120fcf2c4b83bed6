from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field, StringConstraints

from backend_app.users.models import UserRole

USERNAME_PATTERN = r"^[A-Za-z0-9_.-]{3,50}$"


def _no_line_breaks(value: str) -> str:
    # Names end up in email headers; a line break there is header injection.
    if re.search(r"[\r\n]", value):
        raise ValueError("must be a single line")
    return value


Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), AfterValidator(_no_line_breaks)
]
Username = Annotated[str, StringConstraints(pattern=USERNAME_PATTERN)]


class UserPublic(BaseModel):
    """What anyone signed in may see of an account."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    first_name: str
    last_name: str
    role: UserRole
    created_at: datetime


class UserOut(UserPublic):
    """An account as its owner sees it."""

    email: EmailStr
    is_admin: bool


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: Username | None = None
    first_name: Name | None = None
    last_name: Name | None = None


class UserPage(BaseModel):
    items: list[UserPublic]
    total: int
    limit: int
    offset: int


class Registration(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: EmailStr
    username: Username
    password: str = Field(min_length=10, max_length=128)
    first_name: Name
    last_name: Name
    role: UserRole

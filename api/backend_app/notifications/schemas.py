from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from backend_app.notifications.service import NOTIFICATION_TYPES

NotificationType = Literal["follow", "like", "comment", "message", "system"]
assert set(NotificationType.__args__) == set(NOTIFICATION_TYPES)


class NotificationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    type: str
    title: str
    body: str
    data: dict[str, Any]
    created_at: datetime
    read_at: datetime | None


class NotificationPage(BaseModel):
    items: list[NotificationOut]
    total: int
    limit: int
    offset: int


class DeviceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=8, max_length=4096)
    platform: Literal["ios", "android", "web"]


class DeviceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    platform: str
    created_at: datetime


class PreferenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: NotificationType
    push: bool = True
    email: bool = True


class PreferenceOut(PreferenceIn):
    model_config = ConfigDict(from_attributes=True)

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from backend_app.core.openapi import JsonBool, text
from backend_app.core.pagination import page_example
from backend_app.notifications.repository import DEFAULT_EMAIL, DEFAULT_PUSH
from backend_app.notifications.service import NOTIFICATION_TYPES

DeviceToken = text(min_length=8, max_length=4096, trimmed=False)
NotificationType = Literal["follow", "like", "comment", "message", "system"]
assert set(NotificationType.__args__) == set(NOTIFICATION_TYPES)


NOTIFICATION_EXAMPLE = {
    "id": 5012,
    "type": "comment",
    "title": "Grace Hopper commented on your post",
    "body": "Congratulations on the new role!",
    "data": {"commenter_id": 9, "post_id": 77},
    "created_at": "2025-03-06T17:45:00Z",
    "read_at": "2025-03-06T18:00:00Z",
}


class NotificationOut(BaseModel):
    """An in-app notification: `type` is follow, like, comment, message or system; `data` holds the ids it is about
    (`post_id`, `follower_id`, ...); `read_at` is null while unread."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={"examples": [NOTIFICATION_EXAMPLE]},
    )

    id: int
    type: str
    title: str
    body: str
    data: dict[str, Any]
    created_at: datetime
    read_at: datetime | None


class NotificationPage(BaseModel):
    """A page of notifications: `items` from `offset`, at most `limit` of them, out of `total`."""

    model_config = ConfigDict(json_schema_extra={"examples": [page_example(NOTIFICATION_EXAMPLE)]})

    items: list[NotificationOut]
    total: int
    limit: int
    offset: int


class DeviceIn(BaseModel):
    """A device to push notifications to (`POST /api/devices`): the push token the platform gave the app, and the
    platform."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"token": "fcm:dGhpcy1pcy1hbi1leGFtcGxlLXB1c2gtdG9rZW4", "platform": "android"}]
        },
    )

    token: DeviceToken
    platform: Literal["ios", "android", "web"]


DEVICE_EXAMPLE = {"id": 3, "platform": "ios", "created_at": "2025-03-01T12:00:00Z"}


class DeviceOut(BaseModel):
    """A push device of yours. The token itself is never shown: the app on the device knows
    it, and nothing else needs it (a leaked access token must not yield push tokens)."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={"examples": [DEVICE_EXAMPLE]},
    )

    id: int
    platform: str
    created_at: datetime


class DevicePage(BaseModel):
    """A page of your push devices: `items` from `offset`, at most `limit` of them, out of `total`."""

    model_config = ConfigDict(json_schema_extra={"examples": [page_example(DEVICE_EXAMPLE)]})

    items: list[DeviceOut]
    total: int
    limit: int
    offset: int


class PreferenceIn(BaseModel):
    """Whether notifications of one type are pushed and emailed (`PUT /api/notifications/preferences`); both default
    to true."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"type": "message", "push": True, "email": False}]}
    )

    type: NotificationType
    push: JsonBool = DEFAULT_PUSH
    email: JsonBool = DEFAULT_EMAIL


class PreferenceOut(BaseModel):
    """The preference in force for one notification type."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={"examples": [{"type": "message", "push": True, "email": False, "default": False}]},
    )

    type: NotificationType
    push: bool = Field(description="Whether notifications of this type are pushed to your devices.")
    email: bool = Field(
        description="Whether notifications of this type may be emailed (only `message` notifications are emailed)."
    )
    default: bool = Field(
        default=False, description="true when you have set nothing for this type, so the defaults apply."
    )

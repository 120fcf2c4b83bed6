from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from backend_app.core.openapi import JsonRowId, text
from backend_app.core.pagination import page_example

Body = text(min_length=1, max_length=5000)


class MessageCreate(BaseModel):
    """A direct message to another account (`POST /api/messages`): 1-5000 characters, not counting surrounding
    spaces."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"recipient_id": 42, "body": "Thanks for applying! Are you free for a call on Thursday?"}]
        },
    )

    recipient_id: JsonRowId
    body: Body


MESSAGE_EXAMPLE = {
    "id": 88,
    "sender_id": 7,
    "recipient_id": 42,
    "body": "Thanks for applying! Are you free for a call on Thursday?",
    "created_at": "2025-03-05T09:12:00Z",
    "read_at": "2025-03-05T09:30:00Z",
}


class MessageOut(BaseModel):
    """A direct message; `read_at` is null until the recipient opens the conversation."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={"examples": [MESSAGE_EXAMPLE]},
    )

    id: int
    sender_id: int
    recipient_id: int
    body: str
    created_at: datetime
    read_at: datetime | None


THREAD_EXAMPLE = {
    "other_user_id": 7,
    "latest": MESSAGE_EXAMPLE,
    "unread": 0,
}


class Thread(BaseModel):
    """A conversation with one other account: its latest message (sent or received) and how many of theirs you have
    not read."""

    model_config = ConfigDict(json_schema_extra={"examples": [THREAD_EXAMPLE]})

    other_user_id: int
    latest: MessageOut
    unread: int


class ThreadPage(BaseModel):
    """A page of conversations: `items` from `offset`, at most `limit` of them, out of `total`."""

    model_config = ConfigDict(json_schema_extra={"examples": [page_example(THREAD_EXAMPLE)]})

    items: list[Thread]
    total: int
    limit: int
    offset: int


class MessagePage(BaseModel):
    """A page of messages of a conversation: `items` from `offset`, at most `limit` of them, out of `total`."""

    model_config = ConfigDict(json_schema_extra={"examples": [page_example(MESSAGE_EXAMPLE)]})

    items: list[MessageOut]
    total: int
    limit: int
    offset: int

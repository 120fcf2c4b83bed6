from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints


class MessageCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    recipient_id: int
    body: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=5000)]


class MessageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    sender_id: int
    recipient_id: int
    body: str
    created_at: datetime
    read_at: datetime | None


class Thread(BaseModel):
    other_user_id: int
    latest: MessageOut
    unread: int


class ThreadPage(BaseModel):
    items: list[Thread]
    total: int
    limit: int
    offset: int


class MessagePage(BaseModel):
    items: list[MessageOut]
    total: int
    limit: int
    offset: int

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

EventType = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{1,49}$")]

# Recorded by the server itself (a signed-in user reading a job): figures built on them
# (job views per day) must not be inflatable by clients posting events.
SERVER_EVENT_TYPES = frozenset({"job_view"})


class ClientEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event_type: EventType
    subject_id: int | None = Field(default=None, ge=0, le=2**63 - 1)
    data: dict[str, Any] = Field(default_factory=dict, max_length=50)
    occurred_at: datetime | None = None

    @field_validator("event_type")
    @classmethod
    def _client_type(cls, event_type: str) -> str:
        if event_type in SERVER_EVENT_TYPES:
            raise ValueError(f"{event_type} events are recorded by the server, not sent by clients")
        return event_type

    @field_validator("data")
    @classmethod
    def _storable_data(cls, data: dict[str, Any]) -> dict[str, Any]:
        encoded = json.dumps(data)
        if len(encoded) > 4096:
            raise ValueError("must be at most 4096 bytes of JSON")
        if "\\u0000" in encoded:
            raise ValueError("must not contain NUL characters")
        return data

    @field_validator("occurred_at")
    @classmethod
    def _recent(cls, value: datetime | None) -> datetime | None:
        if value is not None and not (2000 <= value.year <= 2100):
            raise ValueError("must be a date between the years 2000 and 2100")
        if value is not None and value.tzinfo is None:
            raise ValueError("must include a time zone")
        return value


class EventBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[ClientEvent] = Field(min_length=1, max_length=100)


class Accepted(BaseModel):
    accepted: int


class UserStatsOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    user_id: int
    followers: int
    following: int
    posts: int
    applications_sent: int
    applications_received: int
    job_views: int
    computed_at: datetime


class DayCount(BaseModel):
    day: date
    views: int


class JobStatsOut(BaseModel):
    job_id: int
    views_per_day: list[DayCount]
    total_views: int
    applications: int

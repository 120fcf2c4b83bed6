from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

EventType = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{1,49}$")]


class ClientEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event_type: EventType
    subject_id: int | None = None
    data: dict[str, Any] = Field(default_factory=dict, max_length=50)
    occurred_at: datetime | None = None


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

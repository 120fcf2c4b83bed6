from __future__ import annotations

import json
from datetime import date, datetime
from typing import Annotated, Any, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    WrapValidator,
    field_validator,
)
from pydantic_core import PydanticCustomError
from typing_extensions import TypeAliasType

from backend_app.core.openapi import JSON_INT_MAX, JsonDatetime, json_int

# Recorded by the server itself (a signed-in user reading a job): figures built on them
# (job views per day) must not be inflatable by clients posting events.
SERVER_EVENT_TYPES = frozenset({"job_view"})

EventType = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z][a-z0-9_]{1,49}$"),
    Field(json_schema_extra={"not": {"enum": sorted(SERVER_EVENT_TYPES)}}),
]

SubjectId = json_int(ge=0, le=JSON_INT_MAX)
DATA_MAX_PROPERTIES = 50
DATA_MAX_BYTES = 4096


def _no_nul(text: str) -> str:
    if "\x00" in text:
        raise ValueError("must not contain NUL characters")
    return text


# JSONB holds no NUL, in a string or in a key.
DataText = Annotated[str, AfterValidator(_no_nul), WithJsonSchema({"type": "string", "not": {"pattern": "\\x00"}})]
# Anything JSON can say, to any depth.
DataValue = TypeAliasType(
    "DataValue",
    Annotated[
        Union[DataText, int, float, bool, list["DataValue"], dict[DataText, "DataValue"], None],  # noqa: UP007
        Field(
            description="Any JSON value, nested to any depth: a string (no NUL character), number, boolean, null,"
            " array or object.",
            examples=[{"filters": ["remote", "full-time"], "page": 2}],
        ),
    ],
)


def _one_error(data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    # One readable error instead of one per branch of DataValue at every depth.
    try:
        return handler(data)
    except ValidationError:
        raise PydanticCustomError(
            "value_error",
            f"must be a JSON object of at most {DATA_MAX_PROPERTIES} properties, with no NUL character in any"
            " key or string",
        ) from None


# An RFC 3339 date-time from 2000 to 2100 (the years an event may be dated in), with its offset.
OCCURRED_AT_PATTERN = (
    r"^(?:20[0-9]{2}|2100)-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])[Tt]"
    r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]+)?(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$"
)


CLIENT_EVENT_EXAMPLE = {
    "event_type": "job_search",
    "subject_id": 12,
    "data": {"query": "backend engineer", "results": 14},
    "occurred_at": "2025-03-09T15:04:05Z",
}


class ClientEvent(BaseModel):
    """One event a client records: a snake_case `event_type` (not one the server records itself, such as
    `job_view`), what it is about (`subject_id`), free JSON `data` and when it happened (years 2000-2100, with a
    time zone)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [CLIENT_EVENT_EXAMPLE]},
    )

    event_type: EventType
    subject_id: SubjectId | None = None
    data: Annotated[dict[DataText, DataValue], WrapValidator(_one_error)] = Field(
        default_factory=dict,
        max_length=DATA_MAX_PROPERTIES,
        description=f"At most {DATA_MAX_BYTES} bytes as JSON (with non-ASCII characters escaped).",
    )
    occurred_at: Annotated[JsonDatetime, Field(json_schema_extra={"pattern": OCCURRED_AT_PATTERN})] | None = None

    @field_validator("event_type")
    @classmethod
    def _client_type(cls, event_type: str) -> str:
        if event_type in SERVER_EVENT_TYPES:
            raise ValueError(f"{event_type} events are recorded by the server, not sent by clients")
        return event_type

    @field_validator("data")
    @classmethod
    def _storable_data(cls, data: dict[str, Any]) -> dict[str, Any]:
        if len(json.dumps(data)) > DATA_MAX_BYTES:
            raise ValueError(f"must be at most {DATA_MAX_BYTES} bytes of JSON")
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
    """Up to 100 client events, sent together (`POST /api/analytics/events`)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"events": [CLIENT_EVENT_EXAMPLE]}]},
    )

    events: list[ClientEvent] = Field(min_length=1, max_length=100)


class Accepted(BaseModel):
    """How many events were accepted."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"accepted": 1}]})

    accepted: int


class UserStatsOut(BaseModel):
    """An account's figures and when they were computed."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "user_id": 42,
                    "followers": 18,
                    "following": 25,
                    "posts": 7,
                    "applications_sent": 4,
                    "applications_received": 0,
                    "job_views": 31,
                    "computed_at": "2025-03-10T02:00:00Z",
                }
            ]
        },
    )

    user_id: int
    followers: int
    following: int
    posts: int
    applications_sent: int
    applications_received: int
    job_views: int
    computed_at: datetime


class DayCount(BaseModel):
    """A job's views on one day (UTC)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"day": "2025-03-09", "views": 17}]})

    day: date
    views: int


class JobStatsOut(BaseModel):
    """A job's views per day (each signed-in viewer counted once a day), their total and the number of applications."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "job_id": 12,
                    "views_per_day": [{"day": "2025-03-08", "views": 9}, {"day": "2025-03-09", "views": 17}],
                    "total_views": 26,
                    "applications": 3,
                }
            ]
        }
    )

    job_id: int
    views_per_day: list[DayCount]
    total_views: int
    applications: int

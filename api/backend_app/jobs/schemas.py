from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=200)]
Location = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Salary = Annotated[int, Field(ge=0, le=100_000_000)]


def _assume_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


# A time without a zone is taken as UTC, on create and update alike (comparing it with the
# stored, zoned times would otherwise fail).
UtcDatetime = Annotated[datetime, AfterValidator(_assume_utc)]


class _SalaryRange(BaseModel):
    salary_min: Salary | None = None
    salary_max: Salary | None = None

    @model_validator(mode="after")
    def _min_not_above_max(self) -> Self:
        if self.salary_min is not None and self.salary_max is not None and self.salary_min > self.salary_max:
            raise ValueError("salary_min must not be greater than salary_max")
        return self


class JobCreate(_SalaryRange):
    model_config = ConfigDict(extra="forbid")

    title: Title
    description: Annotated[str, StringConstraints(strip_whitespace=True, min_length=10, max_length=20_000)]
    location: Location
    expires_at: UtcDatetime | None = None


class JobUpdate(_SalaryRange):
    model_config = ConfigDict(extra="forbid")

    title: Title | None = None
    description: Annotated[str, StringConstraints(strip_whitespace=True, min_length=10, max_length=20_000)] | None = (
        None
    )
    location: Location | None = None
    expires_at: UtcDatetime | None = None
    closed: bool | None = Field(default=None, description="true closes the posting to new applications")


class JobOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    employer_id: int
    title: str
    description: str
    location: str
    salary_min: int | None
    salary_max: int | None
    expires_at: datetime | None
    closed_at: datetime | None
    created_at: datetime
    is_open: bool


class JobPage(BaseModel):
    items: list[JobOut]
    total: int
    limit: int
    offset: int


class ApplicationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cover_letter: Annotated[str, StringConstraints(max_length=10_000)] | None = None


class ApplicationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    job_id: int
    applicant_id: int
    cover_letter: str | None
    created_at: datetime


class ApplicationPage(BaseModel):
    items: list[ApplicationOut]
    total: int
    limit: int
    offset: int

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from backend_app.core.openapi import JsonBool, JsonDatetime, json_int, text
from backend_app.core.pagination import page_example
from backend_app.jobs.models import ApplicationStatus

Title = text(min_length=3, max_length=200)
Location = text(min_length=1, max_length=200)
Description = text(min_length=10, max_length=20_000)
Salary = json_int(ge=0, le=100_000_000)
CoverLetter = text(max_length=10_000, trimmed=False)


def _assume_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


# A time without a zone is taken as UTC, on create and update alike (comparing it with the
# stored, zoned times would otherwise fail).
UtcDatetime = Annotated[JsonDatetime, AfterValidator(_assume_utc)]


class _SalaryRange(BaseModel):
    salary_min: Salary | None = None
    salary_max: Salary | None = None

    @model_validator(mode="after")
    def _min_not_above_max(self) -> Self:
        if self.salary_min is not None and self.salary_max is not None and self.salary_min > self.salary_max:
            raise ValueError("salary_min must not be greater than salary_max")
        return self


JOB_CREATE_EXAMPLE = {
    "title": "Senior Backend Engineer",
    "description": "Build the APIs of our hiring platform with Python and PostgreSQL.",
    "location": "Berlin (hybrid)",
    "salary_min": 70000,
    "salary_max": 90000,
    "expires_at": "2030-01-31T23:59:59Z",
}


class JobCreate(_SalaryRange):
    """A new job posting (`POST /api/jobs`). `salary_min` must not be above `salary_max`; a time without a zone is
    taken as UTC."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [JOB_CREATE_EXAMPLE]},
    )

    title: Title
    description: Description
    location: Location
    expires_at: UtcDatetime | None = Field(
        default=None, description="When the posting stops taking applications; must be in the future (422 if not)."
    )


class JobUpdate(_SalaryRange):
    """Changes to a posting (`PATCH /api/jobs/{job_id}`): send only the fields that change. The salary range, with
    the posting's current values for what is not sent, must keep `salary_min` at most `salary_max`."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"salary_max": 95000, "closed": False}]})

    title: Title | None = None
    description: Description | None = None
    location: Location | None = None
    expires_at: UtcDatetime | None = Field(
        default=None, description="A new expiry; a time already past expires the posting now."
    )
    closed: JsonBool | None = Field(default=None, description="true closes the posting to new applications")


JOB_EXAMPLE = {
    "id": 12,
    "employer_id": 7,
    **JOB_CREATE_EXAMPLE,
    "closed_at": "2025-03-20T12:00:00Z",
    "created_at": "2025-03-01T10:00:00Z",
    "is_open": False,
}


class JobOut(BaseModel):
    """A job posting. `is_open` is true while it is not closed and has not expired: only then does it take
    applications."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={"examples": [JOB_EXAMPLE]},
    )

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
    """A page of job postings: `items` from `offset`, at most `limit` of them, out of `total`."""

    model_config = ConfigDict(json_schema_extra={"examples": [page_example(JOB_EXAMPLE)]})

    items: list[JobOut]
    total: int
    limit: int
    offset: int


class ApplicationCreate(BaseModel):
    """An application to a job (`POST /api/jobs/{job_id}/apply`); send `{}` without a cover letter."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"cover_letter": "Six years of running Python services in production."}]},
    )

    cover_letter: CoverLetter | None = None


class ApplicationStageChange(BaseModel):
    """The stage the job's employer moves an application to (withdrawing is the applicant's)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"status": "interview"}]})

    status: Literal["reviewed", "interview", "rejected", "hired"] = Field(
        description="A later stage than the application's: submitted, then reviewed, then interview;"
        " rejected and hired are final."
    )


APPLICATION_EXAMPLE = {
    "id": 301,
    "job_id": 12,
    "applicant_id": 42,
    "cover_letter": "Six years of running Python services in production.",
    "created_at": "2025-03-02T08:15:00Z",
    "status": "reviewed",
    "status_changed_at": "2025-03-04T14:30:00Z",
}


class ApplicationOut(BaseModel):
    """An application to a job, with its current stage."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={"examples": [APPLICATION_EXAMPLE]},
    )

    id: int
    job_id: int
    applicant_id: int
    cover_letter: str | None
    created_at: datetime
    status: ApplicationStatus = Field(
        description="submitted, reviewed, interview, then rejected or hired (final); withdrawn (final) by the"
        " applicant."
    )
    status_changed_at: datetime | None = Field(description="When the stage last changed; null while submitted.")


class ApplicationPage(BaseModel):
    """A page of applications: `items` from `offset`, at most `limit` of them, out of `total`."""

    model_config = ConfigDict(json_schema_extra={"examples": [page_example(APPLICATION_EXAMPLE)]})

    items: list[ApplicationOut]
    total: int
    limit: int
    offset: int

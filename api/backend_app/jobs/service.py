"""Job posting and application rules."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.exc import IntegrityError

from backend_app.auth.service import display_name
from backend_app.db.sessions import AsyncReadSession, AsyncWriteSession
from backend_app.emails import tasks as email_tasks
from backend_app.jobs import repository
from backend_app.jobs.models import Application, ApplicationStatus, Job
from backend_app.jobs.schemas import ApplicationCreate, JobCreate, JobUpdate
from backend_app.outbox import service as outbox
from backend_app.users import repository as users
from backend_app.users.models import User, UserRole


class Forbidden(Exception):
    pass


class Conflict(Exception):
    pass


class ExpiryInThePast(Exception):
    pass


# The stages in order; the employer moves an application only forwards. A final stage ends it.
_STAGE_ORDER = {
    ApplicationStatus.submitted: 0,
    ApplicationStatus.reviewed: 1,
    ApplicationStatus.interview: 2,
    ApplicationStatus.rejected: 3,
    ApplicationStatus.hired: 3,
}
FINAL_STAGES = frozenset({ApplicationStatus.rejected, ApplicationStatus.hired, ApplicationStatus.withdrawn})


async def applications_for_job(
    *, session: AsyncReadSession, job: Job, user: User, limit: int, offset: int
) -> tuple[list[Application], int]:
    if job.employer_id != user.id:
        raise Forbidden("Only the employer who posted this job can see its applications.")
    return await repository.applications_for_job(session, job.id, limit=limit, offset=offset)


async def create_job(*, session: AsyncWriteSession, employer: User, job: JobCreate) -> Job:
    if employer.role is not UserRole.employer:
        raise Forbidden("Only employers can post jobs.")
    if job.expires_at is not None and job.expires_at <= datetime.now(UTC):
        raise ExpiryInThePast("must be in the future (a posting that has expired takes no applications)")
    posting = Job(employer_id=employer.id, **job.model_dump())
    session.add(posting)
    await session.flush()
    return posting


async def update_job(*, session: AsyncWriteSession, job: Job, user: User, changes: JobUpdate) -> Job:
    if job.employer_id != user.id:
        raise Forbidden("Only the employer who posted this job can change it.")
    fields = changes.model_dump(exclude_unset=True)
    closed = fields.pop("closed", None)
    merged_min = fields.get("salary_min", job.salary_min)
    merged_max = fields.get("salary_max", job.salary_max)
    if merged_min is not None and merged_max is not None and merged_min > merged_max:
        raise Conflict("salary_min must not be greater than salary_max.")
    for name, value in fields.items():
        if value is None and name in {"title", "description", "location"}:
            continue
        setattr(job, name, value)
    if closed is True and job.closed_at is None:
        job.closed_at = datetime.now(UTC)
    elif closed is False:
        job.closed_at = None
    await session.flush()
    await session.refresh(job)
    return job


async def delete_job(*, session: AsyncWriteSession, job: Job, user: User) -> None:
    if job.employer_id != user.id:
        raise Forbidden("Only the employer who posted this job can delete it.")
    await session.delete(job)


async def apply(
    *, session: AsyncWriteSession, job: Job, applicant: User, application: ApplicationCreate
) -> Application:
    if applicant.role is not UserRole.job_seeker:
        raise Forbidden("Only job seekers can apply to jobs.")
    if not job.is_open:
        raise Conflict("This job is closed to new applications.")
    if await repository.has_applied(session, job.id, applicant.id):
        raise Conflict("You have already applied to this job.")
    created = Application(job_id=job.id, applicant_id=applicant.id, cover_letter=application.cover_letter)
    session.add(created)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict("You have already applied to this job.") from None
    employer = await users.get(session, job.employer_id)
    if employer is not None:
        await outbox.add(
            session,
            email_tasks.send_job_application_email.call(
                employer_email=employer.email,
                employer_name=display_name(employer),
                job_title=job.title,
                applicant_name=display_name(applicant),
                applicant_email=applicant.email,
                job_id=job.id,
            ),
            idempotency_key=f"application-email-{created.id}",
            owner_id=applicant.id,
        )
    return created


def _refuse_if_final(application: Application) -> None:
    if application.status in FINAL_STAGES:
        raise Conflict(f"This application is already {application.status}.")


async def move_application(
    *, session: AsyncWriteSession, job: Job, application: Application, employer: User, status: ApplicationStatus
) -> Application:
    """The job's employer moves an application (locked by the caller) to a later stage:
    submitted -> reviewed -> interview, and from any of those to rejected or hired (final)."""
    if job.employer_id != employer.id:
        raise Forbidden("Only the employer who posted this job can move its applications.")
    _refuse_if_final(application)
    current = ApplicationStatus(application.status)
    if _STAGE_ORDER[status] <= _STAGE_ORDER[current]:
        raise Conflict(f"This application is already {current}; it can only move to a later stage.")
    return await _change_stage(session=session, job=job, application=application, status=status)


async def withdraw_application(
    *, session: AsyncWriteSession, job: Job, application: Application, applicant: User
) -> Application:
    """The applicant takes back an application (locked by the caller) that no decision has ended."""
    if application.applicant_id != applicant.id:
        raise Forbidden("Only the applicant can withdraw an application.")
    _refuse_if_final(application)
    return await _change_stage(session=session, job=job, application=application, status=ApplicationStatus.withdrawn)


async def _change_stage(
    *, session: AsyncWriteSession, job: Job, application: Application, status: ApplicationStatus
) -> Application:
    """Record the stage and tell the applicant by email (a withdrawal is confirmed the same way)."""
    application.status = status
    application.status_changed_at = datetime.now(UTC)
    await session.flush()
    applicant = await users.get(session, application.applicant_id)
    if applicant is not None:
        await outbox.add(
            session,
            email_tasks.send_application_status_email.call(
                applicant_email=applicant.email,
                applicant_name=display_name(applicant),
                job_title=job.title,
                application_id=application.id,
                status=status.value,
            ),
            # A stage is reached once (stages only move forwards), so this key is one email.
            idempotency_key=f"application-status-{application.id}-{status.value}",
            owner_id=applicant.id,
        )
    return application

"""Job posting and application rules."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.exc import IntegrityError

from backend_app.auth.service import display_name
from backend_app.core.read_replica import AsyncWriteSession
from backend_app.jobs import repository
from backend_app.jobs.models import Application, Job
from backend_app.jobs.schemas import ApplicationCreate, JobCreate, JobUpdate
from backend_app.outbox import service as outbox
from backend_app.tasks.models import TaskBackend
from backend_app.users.models import User, UserRole


class Forbidden(Exception):
    pass


class Conflict(Exception):
    pass


async def create_job(*, session: AsyncWriteSession, employer: User, job: JobCreate) -> Job:
    if employer.role is not UserRole.employer:
        raise Forbidden("Only employers can post jobs.")
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
    employer = await session.get(User, job.employer_id)
    if employer is not None:
        await outbox.add(
            session=session,
            backend=TaskBackend.celery,
            queue="emails",
            task="backend_app.core.celery_tasks.send_job_application_email",
            kwargs={
                "employer_email": employer.email,
                "employer_name": display_name(employer),
                "job_title": job.title,
                "applicant_name": display_name(applicant),
                "applicant_email": applicant.email,
                "job_id": job.id,
            },
            idempotency_key=f"application-email-{created.id}",
            owner_id=applicant.id,
        )
    return created

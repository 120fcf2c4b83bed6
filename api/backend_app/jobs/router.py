"""Job postings and applications."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response, status

from backend_app.analytics import service as analytics
from backend_app.analytics.buffer import new_event
from backend_app.auth.dependencies import CurrentUser, CurrentUserOnPrimary, OptionalUser, VerifiedUser
from backend_app.core.errors import invalid
from backend_app.core.openapi import RowId, errors, text
from backend_app.core.pagination import Limit, Offset
from backend_app.db.dependencies import ReadSession, WriteSession
from backend_app.jobs import repository, service
from backend_app.jobs.dependencies import (
    ValidApplicationForUpdate,
    ValidJob,
    ValidJobForUpdate,
    ValidJobOnPrimary,
)
from backend_app.jobs.models import ApplicationStatus
from backend_app.jobs.schemas import (
    ApplicationCreate,
    ApplicationOut,
    ApplicationPage,
    ApplicationStageChange,
    JobCreate,
    JobOut,
    JobPage,
    JobUpdate,
)

router = APIRouter(tags=["jobs"])

SearchText = text(max_length=200, trimmed=False)


def _forbidden(error: service.Forbidden) -> HTTPException:
    return HTTPException(status.HTTP_403_FORBIDDEN, detail=str(error))


def _conflict(error: service.Conflict) -> HTTPException:
    return HTTPException(status.HTTP_409_CONFLICT, detail=str(error))


@router.post("/api/jobs", response_model=JobOut, status_code=status.HTTP_201_CREATED, responses=errors(403))
async def create_job(job: JobCreate, user: VerifiedUser, session: WriteSession) -> JobOut:
    """Post a job (employers with a confirmed email address). `expires_at`, if given, must be
    in the future: a time already past is a 422 on `body.expires_at`."""
    try:
        return JobOut.model_validate(await service.create_job(session=session, employer=user, job=job))
    except service.Forbidden as error:
        raise _forbidden(error) from None
    except service.ExpiryInThePast as error:
        raise invalid(("body", "expires_at"), str(error)) from None


@router.get("/api/jobs", response_model=JobPage)
async def list_jobs(
    session: ReadSession,
    q: Annotated[SearchText | None, Query(description="words to find in title or description")] = None,
    location: Annotated[SearchText | None, Query()] = None,
    employer_id: RowId | None = None,
    include_closed: bool = False,
    limit: Limit = 20,
    offset: Offset = 0,
) -> JobPage:
    """Job postings, only open ones unless `include_closed=true`; no sign-in needed. `q` searches title and description
    (full text, best matches first), `location` matches part of the location, `employer_id` one employer's postings;
    otherwise newest first. Paginated with `limit` and `offset`."""
    jobs, total = await repository.search(
        session,
        q=q,
        location=location,
        employer_id=employer_id,
        include_closed=include_closed,
        limit=limit,
        offset=offset,
    )
    return JobPage(items=[JobOut.model_validate(j) for j in jobs], total=total, limit=limit, offset=offset)


@router.get("/api/jobs/{job_id}", response_model=JobOut)
async def get_job(job: ValidJob, user: OptionalUser) -> JobOut:
    """One job posting, open or not (`is_open`); no sign-in needed. A signed-in reader's view counts in the job's
    statistics (once a day per viewer)."""
    if user is not None:
        await analytics.record_server_event(new_event("job_view", user_id=user.id, subject_id=job.id))
    return JobOut.model_validate(job)


@router.patch("/api/jobs/{job_id}", response_model=JobOut, responses=errors(403))
async def update_job(
    user: CurrentUserOnPrimary, job: ValidJobForUpdate, changes: JobUpdate, session: WriteSession
) -> JobOut:
    """Change a posting (its employer only; 403 for anyone else), sending only the fields that change. `{"closed":
    true}` closes it to new applications, `false` reopens it. A change that would leave `salary_min` above
    `salary_max` is a 422."""
    try:
        updated = await service.update_job(session=session, job=job, user=user, changes=changes)
    except service.Forbidden as error:
        raise _forbidden(error) from None
    except service.Conflict as error:
        # The changes and the posting together would hold a salary range upside down.
        raise invalid(("body",), str(error)) from None
    return JobOut.model_validate(updated)


@router.delete("/api/jobs/{job_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(403))
async def delete_job(user: CurrentUserOnPrimary, job: ValidJobForUpdate, session: WriteSession) -> Response:
    """Delete a posting and the applications to it (its employer only; 403 for anyone else). To stop applications but
    keep them, close it instead (`PATCH` with `{"closed": true}`)."""
    try:
        await service.delete_job(session=session, job=job, user=user)
    except service.Forbidden as error:
        raise _forbidden(error) from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/api/jobs/{job_id}/apply",
    response_model=ApplicationOut,
    status_code=status.HTTP_201_CREATED,
    responses=errors(403, 409),
    summary="Apply to a job",
)
async def apply(
    user: VerifiedUser, job: ValidJobForUpdate, application: ApplicationCreate, session: WriteSession
) -> ApplicationOut:
    """Apply to a job (job seekers with a confirmed email address; 403 otherwise); send `{}` without a cover letter.
    201 with `status: "submitted"`; 409 if you already applied or the job is closed or expired. The employer is
    emailed about the application."""
    try:
        created = await service.apply(session=session, job=job, applicant=user, application=application)
    except service.Forbidden as error:
        raise _forbidden(error) from None
    except service.Conflict as error:
        raise _conflict(error) from None
    return ApplicationOut.model_validate(created)


@router.get(
    "/api/jobs/{job_id}/applications",
    response_model=ApplicationPage,
    responses=errors(403),
    summary="List a job's applications",
)
async def job_applications(
    user: CurrentUser, job: ValidJob, session: ReadSession, limit: Limit = 20, offset: Offset = 0
) -> ApplicationPage:
    """The applications to a job, oldest first, each with its stage (`status`): the job's employer only (403 for anyone
    else). Paginated with `limit` and `offset`."""
    try:
        found, total = await service.applications_for_job(
            session=session, job=job, user=user, limit=limit, offset=offset
        )
    except service.Forbidden as error:
        raise _forbidden(error) from None
    return ApplicationPage(
        items=[ApplicationOut.model_validate(a) for a in found], total=total, limit=limit, offset=offset
    )


@router.patch(
    "/api/jobs/{job_id}/applications/{application_id}", response_model=ApplicationOut, responses=errors(403, 409)
)
async def move_application(
    user: CurrentUserOnPrimary,
    job: ValidJobOnPrimary,
    application: ValidApplicationForUpdate,
    change: ApplicationStageChange,
    session: WriteSession,
) -> ApplicationOut:
    """Move an application to a later stage (the job's employer only; 403 for anyone else):
    submitted -> reviewed -> interview, and from any of these to rejected or hired, which are
    final. A stage that is not later than the current one, or any change after a final stage
    (rejected, hired, withdrawn), is a 409 ("This application is already hired."). The
    applicant is emailed "Your application for <title>: <stage>" with a link to it."""
    try:
        moved = await service.move_application(
            session=session,
            job=job,
            application=application,
            employer=user,
            status=ApplicationStatus(change.status),
        )
    except service.Forbidden as error:
        raise _forbidden(error) from None
    except service.Conflict as error:
        raise _conflict(error) from None
    return ApplicationOut.model_validate(moved)


@router.post(
    "/api/jobs/{job_id}/applications/{application_id}/withdraw",
    response_model=ApplicationOut,
    responses=errors(403, 409),
)
async def withdraw_application(
    user: CurrentUserOnPrimary, job: ValidJobOnPrimary, application: ValidApplicationForUpdate, session: WriteSession
) -> ApplicationOut:
    """Withdraw your own application (the applicant only; 403 for anyone else): its status
    becomes `withdrawn`, final, and the employer still sees it in the job's applications. Once
    rejected, hired or withdrawn it is a 409. The applicant is emailed a confirmation."""
    try:
        withdrawn = await service.withdraw_application(
            session=session, job=job, application=application, applicant=user
        )
    except service.Forbidden as error:
        raise _forbidden(error) from None
    except service.Conflict as error:
        raise _conflict(error) from None
    return ApplicationOut.model_validate(withdrawn)


@router.get("/api/users/me/applications", response_model=ApplicationPage, summary="List my applications")
async def my_applications(
    user: CurrentUser, session: ReadSession, limit: Limit = 20, offset: Offset = 0
) -> ApplicationPage:
    """Your own applications, newest first, each with its current stage (`status`, `status_changed_at`). Paginated with
    `limit` and `offset`."""
    found, total = await repository.applications_by_applicant(session, user.id, limit=limit, offset=offset)
    return ApplicationPage(
        items=[ApplicationOut.model_validate(a) for a in found], total=total, limit=limit, offset=offset
    )

"""Job postings and applications."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response, status

from backend_app.analytics import service as analytics
from backend_app.analytics.buffer import new_event
from backend_app.auth.dependencies import CurrentUser, OptionalUser
from backend_app.core.pagination import Limit, Offset
from backend_app.core.read_replica import ReadSession, WriteSession
from backend_app.jobs import repository, service
from backend_app.jobs.dependencies import ValidJob, ValidJobForUpdate
from backend_app.jobs.schemas import (
    ApplicationCreate,
    ApplicationOut,
    ApplicationPage,
    JobCreate,
    JobOut,
    JobPage,
    JobUpdate,
)

router = APIRouter(tags=["jobs"])


def _forbidden(error: service.Forbidden) -> HTTPException:
    return HTTPException(status.HTTP_403_FORBIDDEN, detail=str(error))


@router.post("/api/jobs", response_model=JobOut, status_code=status.HTTP_201_CREATED)
async def create_job(job: JobCreate, user: CurrentUser, session: WriteSession) -> JobOut:
    try:
        return JobOut.model_validate(await service.create_job(session=session, employer=user, job=job))
    except service.Forbidden as error:
        raise _forbidden(error) from None


@router.get("/api/jobs", response_model=JobPage)
async def list_jobs(
    session: ReadSession,
    q: Annotated[str | None, Query(max_length=200, description="words to find in title or description")] = None,
    location: Annotated[str | None, Query(max_length=200)] = None,
    employer_id: int | None = None,
    include_closed: bool = False,
    limit: Limit = 20,
    offset: Offset = 0,
) -> JobPage:
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
    if user is not None:
        await analytics.record_server_event(new_event("job_view", user_id=user.id, subject_id=job.id))
    return JobOut.model_validate(job)


@router.patch("/api/jobs/{job_id}", response_model=JobOut)
async def update_job(job: ValidJobForUpdate, changes: JobUpdate, user: CurrentUser, session: WriteSession) -> JobOut:
    try:
        updated = await service.update_job(session=session, job=job, user=user, changes=changes)
    except service.Forbidden as error:
        raise _forbidden(error) from None
    except service.Conflict as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(error)) from None
    return JobOut.model_validate(updated)


@router.delete("/api/jobs/{job_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_job(job: ValidJobForUpdate, user: CurrentUser, session: WriteSession) -> Response:
    try:
        await service.delete_job(session=session, job=job, user=user)
    except service.Forbidden as error:
        raise _forbidden(error) from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/api/jobs/{job_id}/apply", response_model=ApplicationOut, status_code=status.HTTP_201_CREATED)
async def apply(
    job: ValidJobForUpdate, application: ApplicationCreate, user: CurrentUser, session: WriteSession
) -> ApplicationOut:
    try:
        created = await service.apply(session=session, job=job, applicant=user, application=application)
    except service.Forbidden as error:
        raise _forbidden(error) from None
    except service.Conflict as error:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(error)) from None
    return ApplicationOut.model_validate(created)


@router.get("/api/jobs/{job_id}/applications", response_model=ApplicationPage)
async def job_applications(
    job: ValidJob, user: CurrentUser, session: ReadSession, limit: Limit = 20, offset: Offset = 0
) -> ApplicationPage:
    if job.employer_id != user.id:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, detail="Only the employer who posted this job can see its applications."
        )
    found, total = await repository.applications_for_job(session, job.id, limit=limit, offset=offset)
    return ApplicationPage(
        items=[ApplicationOut.model_validate(a) for a in found], total=total, limit=limit, offset=offset
    )


@router.get("/api/users/me/applications", response_model=ApplicationPage)
async def my_applications(
    user: CurrentUser, session: ReadSession, limit: Limit = 20, offset: Offset = 0
) -> ApplicationPage:
    found, total = await repository.applications_by_applicant(session, user.id, limit=limit, offset=offset)
    return ApplicationPage(
        items=[ApplicationOut.model_validate(a) for a in found], total=total, limit=limit, offset=offset
    )

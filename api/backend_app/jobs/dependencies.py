"""Validation dependencies: load the job once or answer 404."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, status

from backend_app.core.read_replica import ReadSession, WriteSession
from backend_app.jobs import repository
from backend_app.jobs.models import Job


async def valid_job_id(job_id: int, session: ReadSession) -> Job:
    job = await repository.get(session, job_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="No such job.")
    return job


async def valid_job_id_for_update(job_id: int, session: WriteSession) -> Job:
    job = await session.get(Job, job_id, with_for_update=True)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="No such job.")
    return job


ValidJob = Annotated[Job, Depends(valid_job_id)]
ValidJobForUpdate = Annotated[Job, Depends(valid_job_id_for_update)]

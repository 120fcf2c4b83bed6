"""Validation dependencies: load the job once or answer 404."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from backend_app.core.errors import get_or_404
from backend_app.core.read_replica import ReadSession, WriteSession
from backend_app.jobs.models import Job


async def valid_job_id(job_id: int, session: ReadSession) -> Job:
    return await get_or_404(session, Job, job_id, detail="No such job.")


async def valid_job_id_for_update(job_id: int, session: WriteSession) -> Job:
    return await get_or_404(session, Job, job_id, detail="No such job.", lock=True)


ValidJob = Annotated[Job, Depends(valid_job_id)]
ValidJobForUpdate = Annotated[Job, Depends(valid_job_id_for_update)]

"""Validation dependencies: load the job (or one of its applications) once or answer 404."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, status

from backend_app.core.errors import get_or_404
from backend_app.core.openapi import RowId
from backend_app.db.dependencies import ReadSession, WriteSession
from backend_app.jobs.models import Application, Job

NO_SUCH_APPLICATION = "No such application to this job."


async def valid_job_id(job_id: RowId, session: ReadSession) -> Job:
    return await get_or_404(session, Job, job_id, detail="No such job.")


async def valid_job_id_for_update(job_id: RowId, session: WriteSession) -> Job:
    return await get_or_404(session, Job, job_id, detail="No such job.", lock=True)


async def valid_job_id_on_primary(job_id: RowId, session: WriteSession) -> Job:
    """The job, read in the write transaction but not locked (a change to one application
    must not hold up applying to the job)."""
    return await get_or_404(session, Job, job_id, detail="No such job.")


async def valid_application_for_update(job_id: RowId, application_id: RowId, session: WriteSession) -> Application:
    """One application to the job in the path, locked until the transaction ends, so two
    changes of its stage cannot both start from the same one."""
    application = await get_or_404(session, Application, application_id, detail=NO_SUCH_APPLICATION, lock=True)
    if application.job_id != job_id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=NO_SUCH_APPLICATION)
    return application


ValidJob = Annotated[Job, Depends(valid_job_id)]
ValidJobForUpdate = Annotated[Job, Depends(valid_job_id_for_update)]
ValidJobOnPrimary = Annotated[Job, Depends(valid_job_id_on_primary)]
ValidApplicationForUpdate = Annotated[Application, Depends(valid_application_for_update)]

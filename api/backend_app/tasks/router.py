"""The task status API: one view of background work, whether Celery or RQ runs it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, status

from backend_app.auth.dependencies import CurrentAdmin, CurrentAdminOnPrimary, CurrentUser, CurrentUserOnPrimary
from backend_app.core.openapi import errors, text
from backend_app.core.pagination import Limit, Offset
from backend_app.db.dependencies import ReadSession, WriteSession
from backend_app.tasks import service
from backend_app.tasks.schemas import QueueStats, TaskOut, TaskPage

router = APIRouter(tags=["tasks"])

NOT_FOUND = "No such task."

# A task record's id (task_records.id is a varchar(100)).
TaskId = Annotated[text(min_length=1, max_length=100, trimmed=False), Path()]


@router.get("/api/tasks/queues/{queue}/stats", response_model=QueueStats)
async def queue_stats(queue: str, session: ReadSession, _admin: CurrentAdmin) -> QueueStats:
    """Administrators only: a queue's backlog, the messages waiting in its broker (`depth`, null when Redis cannot be
    reached), its recorded tasks waiting, started, failed and dead, and how long the oldest has waited. 404 for an
    unknown queue."""
    try:
        return await service.queue_stats(session=session, queue=queue)
    except service.TaskNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"No queue named {queue!r}.") from None


@router.get("/api/tasks/{task_id}", response_model=TaskOut)
async def get_task(task_id: TaskId, session: ReadSession, user: CurrentUser) -> TaskOut:
    """A background task's record: status, attempts, times, last error and result. Only its owner and administrators
    see it; to anyone else it is a 404, as an unknown one."""
    try:
        return TaskOut.model_validate(await service.get_visible(session=session, task_id=task_id, user=user))
    except service.TaskNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=NOT_FOUND) from None


@router.delete("/api/tasks/{task_id}", response_model=TaskOut, responses=errors(409))
async def cancel_task(task_id: TaskId, session: WriteSession, user: CurrentUserOnPrimary) -> TaskOut:
    """Cancel a task that has not started (pending, queued or retrying): it becomes `cancelled` and does not run. Its
    owner or an administrator; 404 to anyone else; 409 once it has started or finished."""
    try:
        return TaskOut.model_validate(await service.cancel(session=session, task_id=task_id, user=user))
    except service.TaskNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=NOT_FOUND) from None
    except service.TaskConflict as conflict:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(conflict)) from None


@router.post(
    "/api/tasks/{task_id}/requeue", response_model=TaskOut, status_code=status.HTTP_202_ACCEPTED, responses=errors(409)
)
async def requeue_task(task_id: TaskId, session: WriteSession, _admin: CurrentAdminOnPrimary) -> TaskOut:
    """Administrators only: run a `failed` or `dead` task again (its status goes back to `pending`); 409 for a task in
    any other status."""
    try:
        return TaskOut.model_validate(await service.requeue(session=session, task_id=task_id))
    except service.TaskNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=NOT_FOUND) from None
    except service.TaskConflict as conflict:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(conflict)) from None


@router.get("/api/users/me/tasks", response_model=TaskPage)
async def my_tasks(
    session: ReadSession,
    user: CurrentUser,
    limit: Limit = 20,
    offset: Offset = 0,
) -> TaskPage:
    """The background tasks recorded on your behalf (statistics refreshes, video processing, ...), newest first.
    Paginated with `limit` and `offset`."""
    tasks, total = await service.list_for_user(session=session, user=user, limit=limit, offset=offset)
    return TaskPage(items=[TaskOut.model_validate(t) for t in tasks], total=total, limit=limit, offset=offset)

"""The task status API: one view of background work, whether Celery or RQ runs it."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from backend_app.auth.dependencies import CurrentAdmin, CurrentUser
from backend_app.core.pagination import Limit, Offset
from backend_app.core.read_replica import ReadSession, WriteSession
from backend_app.tasks import service
from backend_app.tasks.schemas import QueueStats, TaskOut, TaskPage

router = APIRouter(tags=["tasks"])

NOT_FOUND = "No such task."


@router.get("/api/tasks/queues/{queue}/stats", response_model=QueueStats)
async def queue_stats(queue: str, session: ReadSession, _admin: CurrentAdmin) -> QueueStats:
    try:
        return await service.queue_stats(session=session, queue=queue)
    except service.TaskNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"No queue named {queue!r}.") from None


@router.get("/api/tasks/{task_id}", response_model=TaskOut)
async def get_task(task_id: str, session: ReadSession, user: CurrentUser) -> TaskOut:
    try:
        return TaskOut.model_validate(await service.get_visible(session=session, task_id=task_id, user=user))
    except service.TaskNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=NOT_FOUND) from None


@router.delete("/api/tasks/{task_id}", response_model=TaskOut)
async def cancel_task(task_id: str, session: WriteSession, user: CurrentUser) -> TaskOut:
    try:
        return TaskOut.model_validate(await service.cancel(session=session, task_id=task_id, user=user))
    except service.TaskNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=NOT_FOUND) from None
    except service.TaskConflict as conflict:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(conflict)) from None


@router.post("/api/tasks/{task_id}/requeue", response_model=TaskOut, status_code=status.HTTP_202_ACCEPTED)
async def requeue_task(task_id: str, session: WriteSession, _admin: CurrentAdmin) -> TaskOut:
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
    tasks, total = await service.list_for_user(session=session, user=user, limit=limit, offset=offset)
    return TaskPage(items=[TaskOut.model_validate(t) for t in tasks], total=total, limit=limit, offset=offset)

"""Task status rules shared by the API: who may see a task, what may be cancelled or requeued."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from redis.exceptions import RedisError

from backend_app.db.sessions import AsyncReadSession, AsyncWriteSession
from backend_app.outbox import repository as outbox_repository
from backend_app.tasks import repository
from backend_app.tasks.models import TaskBackend, TaskRecord, TaskStatus
from backend_app.tasks.schemas import QueueStats
from backend_app.users.models import User
from backend_app.worker import rq_app
from backend_app.worker.queues import QUEUE_BACKENDS

logger = logging.getLogger(__name__)

CANCELLABLE = frozenset({TaskStatus.pending, TaskStatus.queued, TaskStatus.retrying})
REQUEUEABLE = frozenset({TaskStatus.dead, TaskStatus.failed})


class TaskNotFound(Exception):
    pass


class TaskConflict(Exception):
    pass


def can_view(task: TaskRecord, user: User) -> bool:
    return user.is_admin or (task.owner_id is not None and task.owner_id == user.id)


async def get_visible(*, session: AsyncReadSession, task_id: str, user: User) -> TaskRecord:
    """The task, if it exists and the user may see it. Others' tasks look like unknown ones."""
    task = await repository.get(session, task_id)
    if task is None or not can_view(task, user):
        raise TaskNotFound(task_id)
    return task


async def cancel(*, session: AsyncWriteSession, task_id: str, user: User) -> TaskRecord:
    task = await repository.get_for_update(session, task_id)
    if task is None or not can_view(task, user):
        raise TaskNotFound(task_id)
    if task.status not in CANCELLABLE:
        raise TaskConflict(f"The task is {task.status.value}; only a task that has not started can be cancelled.")
    # The record is the source of truth: the relay drops a cancelled pending task and a
    # worker skips a cancelled queued one, so no broker call is needed (or can fail) here.
    task.status = TaskStatus.cancelled
    task.finished_at = datetime.now(UTC)
    await session.flush()
    await session.refresh(task)
    return task


async def requeue(*, session: AsyncWriteSession, task_id: str) -> TaskRecord:
    task = await repository.get_for_update(session, task_id)
    if task is None:
        raise TaskNotFound(task_id)
    if task.status not in REQUEUEABLE:
        raise TaskConflict(f"The task is {task.status.value}; only dead or failed tasks can be requeued.")
    task.status = TaskStatus.pending
    task.finished_at = None
    await outbox_repository.add_message(session, task.id)
    await session.refresh(task)
    return task


async def list_for_user(
    *, session: AsyncReadSession, user: User, limit: int, offset: int
) -> tuple[list[TaskRecord], int]:
    tasks = await repository.list_for_owner(session, user.id, limit=limit, offset=offset)
    return tasks, await repository.count_for_owner(session, user.id)


def _broker_depth(queue: str, backend: TaskBackend) -> int | None:
    try:
        if backend is TaskBackend.celery:
            return int(rq_app.get_redis().llen(queue))
        return rq_app.get_queue(queue).count
    except RedisError:
        return None


async def queue_stats(*, session: AsyncReadSession, queue: str) -> QueueStats:
    backend = QUEUE_BACKENDS.get(queue)
    if backend is None:
        raise TaskNotFound(queue)
    counts = await repository.status_counts(session, queue)
    oldest = await repository.oldest_waiting_since(session, queue)
    waiting = sum(counts.get(s, 0) for s in (TaskStatus.pending, TaskStatus.queued, TaskStatus.retrying))
    return QueueStats(
        queue=queue,
        backend=backend,
        depth=await asyncio.to_thread(_broker_depth, queue, backend),
        waiting=waiting,
        oldest_waiting_seconds=(datetime.now(UTC) - oldest).total_seconds() if oldest else None,
        started=counts.get(TaskStatus.started, 0),
        failed=counts.get(TaskStatus.failed, 0),
        dead=counts.get(TaskStatus.dead, 0),
    )

"""Recording background work inside the caller's transaction.

    task_id = await outbox.add(
        session=session,
        backend=TaskBackend.celery,
        queue="emails",
        task="backend_app.core.celery_tasks.send_welcome_email",
        kwargs={"user_email": user.email, ...},
        owner_id=user.id,
    )

The task exists if and only if the caller's transaction commits; the relay publishes it.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from backend_app.core.celery_app import CELERY_QUEUES
from backend_app.core.rq_app import RQ_QUEUES
from backend_app.outbox import repository as outbox_repository
from backend_app.tasks.models import TaskBackend

TASK_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,100}")
QUEUES_BY_BACKEND = {TaskBackend.celery: CELERY_QUEUES, TaskBackend.rq: RQ_QUEUES}


async def add(
    *,
    session: AsyncSession,
    backend: TaskBackend,
    queue: str,
    task: str,
    kwargs: dict[str, Any] | None = None,
    args: list[Any] | None = None,
    idempotency_key: str | None = None,
    owner_id: int | None = None,
) -> str:
    """Record a task to run after commit. The same idempotency key twice records it once.

    `task` is a Celery task name for celery and a dotted function path for rq. Arguments must
    be JSON values. Returns the task id (the idempotency key when one is given).
    """
    if queue not in QUEUES_BY_BACKEND[backend]:
        raise ValueError(f"{queue!r} is not a {backend} queue")
    if idempotency_key is not None and not TASK_ID_PATTERN.fullmatch(idempotency_key):
        # RQ reads ':' in a job id as a separator; keep ids plain for both backends.
        raise ValueError("idempotency_key must be 1-100 letters, digits, '-' or '_'")
    task_id = idempotency_key or str(uuid.uuid4())
    await outbox_repository.record_task(
        session,
        task_id=task_id,
        backend=backend,
        queue=queue,
        name=task,
        payload={"args": list(args or []), "kwargs": dict(kwargs or {})},
        owner_id=owner_id,
    )
    return task_id

"""Recording background work inside the caller's transaction.

    from backend_app.emails import tasks as email_tasks

    task_id = await outbox.add(
        session,
        email_tasks.send_welcome_email.call(user_email=user.email, user_name=..., username=...),
        idempotency_key=f"welcome-email-{user.id}",
        owner_id=user.id,
    )

The task exists if and only if the caller's transaction commits; the relay publishes it to
the queue its declaration names (`worker/registry.py`).
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from backend_app.core.logging import current_request_id
from backend_app.core.tracing import current_trace_context
from backend_app.outbox import repository as outbox_repository
from backend_app.tasks.models import TaskBackend
from backend_app.worker.queues import QUEUES_BY_BACKEND
from backend_app.worker.registry import TaskCall

logger = logging.getLogger(__name__)

TASK_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,100}")

# The payload key listing keyword arguments that are secrets: the relay masks them in what
# Celery shows (task events, Flower) and the worker blanks them in the record once done.
REDACTED_KEY = "redact"


async def add(
    session: AsyncSession,
    call: TaskCall,
    *,
    idempotency_key: str | None = None,
    owner_id: int | None = None,
) -> str:
    """Record `call` (a declared task with its arguments, `task.call(...)`) to run after commit.

    The same idempotency key twice records it once. Returns the task id (the idempotency key
    when one is given). The task keeps the current request's id (`X-Request-ID`), which the
    relay and the workers put on their log lines about it, and the current trace context when
    traces are on, which their spans continue.
    """
    task = call.task
    return await add_named(
        session=session,
        backend=task.backend,
        queue=task.queue,
        task=task.name,
        args=list(call.args),
        kwargs=call.kwargs,
        idempotency_key=idempotency_key,
        owner_id=owner_id,
        redacted_kwargs=task.redacted_kwargs,
    )


async def add_named(
    *,
    session: AsyncSession,
    backend: TaskBackend,
    queue: str,
    task: str,
    kwargs: dict[str, Any] | None = None,
    args: list[Any] | None = None,
    idempotency_key: str | None = None,
    owner_id: int | None = None,
    redacted_kwargs: tuple[str, ...] = (),
) -> str:
    """Record a task by its wire name on any queue of its backend: for tasks outside the
    registry (tests, tools) and checks that pick the queue. Application code uses `add`.

    `task` is a Celery task name for celery and a dotted function path for rq. Arguments must
    be JSON values.
    """
    if queue not in QUEUES_BY_BACKEND[backend]:
        raise ValueError(f"{queue!r} is not a {backend} queue")
    if idempotency_key is not None and not TASK_ID_PATTERN.fullmatch(idempotency_key):
        # RQ reads ':' in a job id as a separator; keep ids plain for both backends.
        raise ValueError("idempotency_key must be 1-100 letters, digits, '-' or '_'")
    task_id = idempotency_key or str(uuid.uuid4())
    payload: dict[str, Any] = {"args": list(args or []), "kwargs": dict(kwargs or {})}
    if redacted_kwargs:
        payload[REDACTED_KEY] = list(redacted_kwargs)
    recorded = await outbox_repository.record_task(
        session,
        task_id=task_id,
        backend=backend,
        queue=queue,
        name=task,
        payload=payload,
        owner_id=owner_id,
        request_id=current_request_id(),
        trace_context=current_trace_context(),
    )
    # DEBUG: a line per task would crowd the request path's log; the request id links them.
    logger.debug("task %s (%s) %s", task_id, task, "recorded" if recorded else "was recorded already")
    return task_id

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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from backend_app.core.logging import current_request_id
from backend_app.core.tracing import current_trace_context
from backend_app.outbox import repository as outbox_repository
from backend_app.outbox.wakeup import running_wakeup
from backend_app.tasks.models import TaskBackend
from backend_app.worker.queues import QUEUES_BY_BACKEND
from backend_app.worker.registry import TaskCall

logger = logging.getLogger(__name__)

TASK_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,100}")

# The payload key listing keyword arguments that are secrets: the relay masks them in what
# Celery shows (task events, Flower) and the worker blanks them in the record once done.
REDACTED_KEY = "redact"


@dataclass(frozen=True)
class Entry:
    """One task for `add_all`: a declared task's call with what `add` takes beside it."""

    call: TaskCall
    idempotency_key: str | None = None
    owner_id: int | None = None


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
    (task_id,) = await add_all(session, [Entry(call, idempotency_key=idempotency_key, owner_id=owner_id)])
    return task_id


async def add_all(session: AsyncSession, entries: Sequence[Entry]) -> list[str]:
    """`add` for several tasks in one statement (a request that sets off a push and an
    email); returns their task ids in order."""
    tasks = [
        _new_task(
            backend=entry.call.task.backend,
            queue=entry.call.task.queue,
            task=entry.call.task.name,
            args=list(entry.call.args),
            kwargs=entry.call.kwargs,
            idempotency_key=entry.idempotency_key,
            owner_id=entry.owner_id,
            redacted_kwargs=entry.call.task.redacted_kwargs,
        )
        for entry in entries
    ]
    return await _record(session, tasks)


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
    new_task = _new_task(
        backend=backend,
        queue=queue,
        task=task,
        args=args,
        kwargs=kwargs,
        idempotency_key=idempotency_key,
        owner_id=owner_id,
        redacted_kwargs=redacted_kwargs,
    )
    (task_id,) = await _record(session, [new_task])
    return task_id


def _new_task(
    *,
    backend: TaskBackend,
    queue: str,
    task: str,
    args: list[Any] | None,
    kwargs: dict[str, Any] | None,
    idempotency_key: str | None,
    owner_id: int | None,
    redacted_kwargs: tuple[str, ...],
) -> outbox_repository.NewTask:
    if queue not in QUEUES_BY_BACKEND[backend]:
        raise ValueError(f"{queue!r} is not a {backend} queue")
    if idempotency_key is not None and not TASK_ID_PATTERN.fullmatch(idempotency_key):
        # RQ reads ':' in a job id as a separator; keep ids plain for both backends.
        raise ValueError("idempotency_key must be 1-100 letters, digits, '-' or '_'")
    payload: dict[str, Any] = {"args": list(args or []), "kwargs": dict(kwargs or {})}
    if redacted_kwargs:
        payload[REDACTED_KEY] = list(redacted_kwargs)
    return outbox_repository.NewTask(
        task_id=idempotency_key or str(uuid.uuid4()),
        backend=backend,
        queue=queue,
        name=task,
        payload=payload,
        owner_id=owner_id,
        request_id=current_request_id(),
        trace_context=current_trace_context(),
    )


async def _record(session: AsyncSession, tasks: list[outbox_repository.NewTask]) -> list[str]:
    ids = [task.task_id for task in tasks]
    if len(set(ids)) != len(ids):
        raise ValueError("one idempotency key given twice in one add_all")
    wakeup = running_wakeup()
    recorded = await outbox_repository.record_tasks(
        session, tasks, wake_after_commit=wakeup.commit_recorded_tasks if wakeup is not None else None
    )
    for task in tasks:
        # DEBUG: a line per task would crowd the request path's log; the request id links them.
        state = "recorded" if task.task_id in recorded else "was recorded already"
        logger.debug("task %s (%s) %s", task.task_id, task.name, state)
    return ids

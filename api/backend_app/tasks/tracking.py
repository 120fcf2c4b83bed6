"""Worker-side bookkeeping: task records follow each task through started, retrying,
succeeded, failed and dead, and a redelivered task that already succeeded is not run again.

Celery tasks use `base=TrackedTask`; RQ job functions are wrapped with `@tracked_job`, and
`rq_app.publish` attaches `rq_job_failed` as the failure callback.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from celery import Task
from rq import get_current_job
from rq.job import Job

from backend_app.core.config import get_settings
from backend_app.core.read_replica import get_database_router, is_connection_error, reading_after
from backend_app.core.worker_runtime import run_async
from backend_app.tasks import repository
from backend_app.tasks.errors import PermanentTaskError, TransientTaskError
from backend_app.tasks.models import FINISHED_STATUSES, TaskBackend, TaskStatus

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

# A result larger than this is summarised: task records are for status, not storage.
MAX_RESULT_BYTES = 4096

# The message header (Celery) / job meta key (RQ) holding the WAL position the task's replica
# reads must see: the relay sets it to a position past the commit that recorded the task.
DB_POSITION_KEY = "db_position"


def small_result(value: Any) -> Any:
    try:
        encoded = json.dumps(value, default=str)
    except (TypeError, ValueError):
        return {"repr": repr(value)[:200]}
    if len(encoded) > MAX_RESULT_BYTES:
        return {"truncated": True, "preview": encoded[:200]}
    return json.loads(encoded)


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


async def _start(task_id: str, backend: TaskBackend, queue: str, name: str, payload: dict[str, Any]) -> bool:
    """True when the task should run; False for a duplicate of a finished task."""
    async with get_database_router().write_session() as session:
        attempt = await repository.start(
            session, task_id=task_id, backend=backend, queue=queue, name=name, payload=payload
        )
    if attempt is None:
        logger.info("task %s (%s) already finished or cancelled; skipping this delivery", task_id, name)
        return False
    max_attempts = get_settings().task_max_attempts
    if attempt > max_attempts:
        # Redelivered again and again (its worker keeps dying): stop here, visibly.
        await _finish(task_id, TaskStatus.dead, error=f"gave up after {max_attempts} attempts")
        logger.error("task %s (%s) dead after %d attempts", task_id, name, max_attempts)
        return False
    logger.info("task %s (%s) started, attempt %d", task_id, name, attempt)
    return True


async def _finish(
    task_id: str,
    status: TaskStatus,
    *,
    result: Any = None,
    error: str | None = None,
    redact: tuple[str, ...] = (),
) -> None:
    async with get_database_router().write_session() as session:
        await repository.finish(session, task_id=task_id, status=status, result=result, error=error)
        if redact and status in FINISHED_STATUSES:
            await repository.redact_kwargs(session, task_id=task_id, names=redact)


def _record(task_id: str, status: TaskStatus, **details: Any) -> None:
    """Write a status from a worker hook; a database outage is logged, never raised into Celery."""
    try:
        run_async(_finish(task_id, status, **details))
    except Exception as error:
        if not is_connection_error(error):
            raise
        logger.error("task %s: could not record %s (database unavailable: %s)", task_id, status.value, error)


class TrackedTask(Task):
    """A Celery task with a durable record, transient-error retries and duplicate skipping."""

    autoretry_for = (TransientTaskError,)
    retry_backoff = True
    retry_jitter = True
    # Keyword arguments blanked in the task record once the task succeeded (secrets, tokens).
    redacted_kwargs: tuple[str, ...] = ()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        task_id = self.request.id
        if task_id is None or self.request.is_eager:
            return self.run(*args, **kwargs)
        queue = (self.request.delivery_info or {}).get("routing_key") or self.queue or "emails"
        payload = {"args": list(args), "kwargs": kwargs}
        try:
            should_run = run_async(_start(task_id, TaskBackend.celery, queue, self.name, payload))
        except Exception as error:
            if not is_connection_error(error):
                raise
            # Without its record the task must not run; try again once the database is back.
            logger.warning("task %s (%s): database unavailable at start; retrying", task_id, self.name)
            raise self.retry(exc=TransientTaskError(describe(error)), countdown=5, max_retries=None) from None
        self.request.tracking_skipped = not should_run
        if not should_run:
            return None
        # Custom message headers appear as request attributes (Celery protocol 2).
        position = getattr(self.request, DB_POSITION_KEY, None) or (self.request.headers or {}).get(DB_POSITION_KEY)
        with reading_after(position):
            return self.run(*args, **kwargs)

    def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
        if not getattr(self.request, "tracking_skipped", False):
            _record(task_id, TaskStatus.succeeded, result=small_result(retval), redact=self.redacted_kwargs)
            logger.info("task %s (%s) succeeded", task_id, self.name)

    def on_retry(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        _record(task_id, TaskStatus.retrying, error=describe(exc))
        logger.warning("task %s (%s) will retry: %s", task_id, self.name, describe(exc))

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        exhausted = isinstance(exc, TransientTaskError) or self.request.retries >= (self.max_retries or 0)
        status = TaskStatus.dead if exhausted and not isinstance(exc, PermanentTaskError) else TaskStatus.failed
        _record(task_id, status, error=describe(exc), redact=self.redacted_kwargs)
        logger.error("task %s (%s) %s: %s", task_id, self.name, status.value, describe(exc))


def tracked_job(func: Callable[P, R]) -> Callable[P, R]:
    """Wrap an RQ job function with a durable record and duplicate skipping.

    Called outside a worker (a plain function call), it just runs.
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        job = get_current_job()
        if job is None:
            return func(*args, **kwargs)
        payload = {"args": list(args), "kwargs": dict(kwargs)}
        if not run_async(_start(job.id, TaskBackend.rq, job.origin, job.func_name, payload)):
            return None  # type: ignore[return-value]
        try:
            with reading_after(job.meta.get(DB_POSITION_KEY)):
                result = func(*args, **kwargs)
        except PermanentTaskError:
            job.retries_left = 0  # RQ retries any exception; this one must not be
            raise
        _record(job.id, TaskStatus.succeeded, result=small_result(result))
        logger.info("job %s (%s) succeeded", job.id, job.func_name)
        return result

    return wrapper


def rq_job_failed(job: Job, connection: Any, exc_type: type, exc_value: BaseException, traceback: Any) -> None:
    """RQ failure callback: runs for exceptions, timeouts, killed work horses, abandoned jobs."""
    retries_left = job.retries_left or 0
    if retries_left > 0:
        status = TaskStatus.retrying
    elif job.retries_left is None or isinstance(exc_value, PermanentTaskError):
        status = TaskStatus.failed
    else:
        status = TaskStatus.dead
    _record(job.id, status, error=describe(exc_value))
    logger.warning("job %s (%s) %s: %s", job.id, job.func_name, status.value, describe(exc_value))

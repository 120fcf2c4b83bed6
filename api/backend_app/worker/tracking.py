"""Worker-side bookkeeping: task records follow each task through started, retrying,
succeeded, failed and dead, and a redelivered task that already succeeded is not run again.

Celery tasks use `base=TrackedTask`; RQ job functions are wrapped with `@tracked_job`, and
`rq_app.publish` attaches `rq_job_failed` as the failure callback.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any, ParamSpec, TypeVar

from celery import Task
from celery.signals import task_postrun, task_prerun
from celery.worker.strategy import default as default_strategy
from rq import get_current_job
from rq.job import Job

from backend_app.core.config import get_settings
from backend_app.core.logging import NO_REQUEST_ID, for_request, request_id_var
from backend_app.core.tracing import RunningSpan, start_span, trace_context_from, tracing_enabled
from backend_app.db.errors import is_connection_error
from backend_app.db.lifecycle import get_database_router
from backend_app.db.position import reading_after
from backend_app.metrics.shared import TASK_RUN_DURATION, TASK_START_DELAY, shared_metrics
from backend_app.tasks import repository
from backend_app.tasks.errors import PermanentTaskError, TransientTaskError
from backend_app.tasks.models import FINISHED_STATUSES, TaskBackend, TaskStatus
from backend_app.worker.runtime import run_async, run_async_when_database_answers

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

# A result larger than this is summarised: task records are for status, not storage.
MAX_RESULT_BYTES = 4096

# The message header (Celery) / job meta key (RQ) holding the WAL position the task's replica
# reads must see: the relay sets it to a position past the commit that recorded the task.
DB_POSITION_KEY = "db_position"
# The message header (Celery) / job meta key (RQ) holding the id of the request that recorded
# the task (the relay sets it from the outbox row); the worker's log lines name it.
REQUEST_ID_KEY = "request_id"
# The message header (Celery) / job meta key (RQ) holding when the task was committed (Unix
# time of its outbox row): the worker measures the wait from commit to start against it.
COMMITTED_AT_KEY = "committed_at"


def message_header(request: Any, key: str) -> Any:
    """A header the relay put on the running Celery task's message, or None. Custom headers
    appear as request attributes (Celery protocol 2) and in `request.headers`, which a retry
    sends again, so every attempt has them."""
    return getattr(request, key, None) or (getattr(request, "headers", None) or {}).get(key)


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


async def _start(task_id: str, backend: TaskBackend, queue: str, name: str, payload: dict[str, Any]) -> int | None:
    """The attempt to run now; None for a duplicate of a finished task (or one past its limit)."""
    async with get_database_router().write_session() as session:
        attempt = await repository.start(
            session, task_id=task_id, backend=backend, queue=queue, name=name, payload=payload
        )
    return attempt if await _admit(task_id, name, attempt) else None


async def _admit(task_id: str, name: str, attempt: int | None) -> bool:
    """Whether a task whose record says `attempt` should run (None: it already finished)."""
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


def _observe_start(backend: TaskBackend, queue: str, name: str, attempt: int | None, committed_at: Any) -> None:
    """The wait from commit to start, for a task's first attempt (later ones wait out a
    backoff on purpose). Clocks of two machines: NTP keeps them within milliseconds."""
    if attempt != 1 or committed_at is None:
        return  # a task enqueued directly, not through the outbox, has no commit to measure from
    try:
        waited = time.time() - float(committed_at)
    except (TypeError, ValueError):
        return
    shared_metrics().observe(TASK_START_DELAY, (backend.value, queue, name), waited)


def _observe_run(backend: TaskBackend, queue: str, name: str, *, succeeded: bool, began: float | None) -> None:
    """One attempt's run time; `failed` covers any attempt that raised (retried or not)."""
    if began is not None:
        outcome = "succeeded" if succeeded else "failed"
        shared_metrics().observe(TASK_RUN_DURATION, (backend.value, queue, name, outcome), time.monotonic() - began)


def _record(task_id: str, status: TaskStatus, **details: Any) -> None:
    """Write a status from a worker hook, waiting out a short database outage (a primary
    restart); a longer one is logged, never raised into Celery or RQ, and leaves the record
    to the stalled-task sweep and the reconciliation (tasks/reconcile.py)."""
    try:
        run_async_when_database_answers(lambda: _finish(task_id, status, **details))
    except Exception as error:
        if not is_connection_error(error):
            raise
        logger.error("task %s: could not record %s (database unavailable: %s)", task_id, status.value, error)


def strategy_naming_the_request(task: Task, app: Any, consumer: Any, **options: Any) -> Callable[..., Any]:
    """Celery's own handling of an arriving message, in the worker's main process (its
    "received" line, ETA and rate-limit lines), naming the request that recorded the task."""
    handle = default_strategy(task, app, consumer, **options)

    def handle_naming_the_request(message: Any, *args: Any, **kwargs: Any) -> Any:
        with for_request((message.headers or {}).get(REQUEST_ID_KEY)):
            return handle(message, *args, **kwargs)

    return handle_naming_the_request


class TrackedTask(Task):
    """A Celery task with a durable record, transient-error retries and duplicate skipping."""

    Strategy = f"{__name__}:strategy_naming_the_request"
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
            attempt = run_async(_start(task_id, TaskBackend.celery, queue, self.name, payload))
        except Exception as error:
            if not is_connection_error(error):
                raise
            # Without its record the task must not run; try again once the database is back.
            logger.warning("task %s (%s): database unavailable at start; retrying", task_id, self.name)
            raise self.retry(exc=TransientTaskError(describe(error)), countdown=5, max_retries=None) from None
        self.request.tracking_skipped = attempt is None
        if attempt is None:
            return None
        _observe_start(TaskBackend.celery, queue, self.name, attempt, message_header(self.request, COMMITTED_AT_KEY))
        self.request.run_queue, self.request.run_began = queue, time.monotonic()
        with reading_after(message_header(self.request, DB_POSITION_KEY)):
            return self.run(*args, **kwargs)

    def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
        if not getattr(self.request, "tracking_skipped", False):
            self._observe_run(succeeded=True)
            shared_metrics().flush()  # first: a record that says succeeded has its figures in
            _record(task_id, TaskStatus.succeeded, result=small_result(retval), redact=self.redacted_kwargs)
            logger.info("task %s (%s) succeeded", task_id, self.name)

    def on_retry(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        self._observe_run(succeeded=False)
        shared_metrics().flush()
        _record(task_id, TaskStatus.retrying, error=describe(exc))
        logger.warning("task %s (%s) will retry: %s", task_id, self.name, describe(exc))

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        exhausted = isinstance(exc, TransientTaskError) or self.request.retries >= (self.max_retries or 0)
        status = TaskStatus.dead if exhausted and not isinstance(exc, PermanentTaskError) else TaskStatus.failed
        self._observe_run(succeeded=False)
        shared_metrics().flush()
        _record(task_id, status, error=describe(exc), redact=self.redacted_kwargs)
        logger.error("task %s (%s) %s: %s", task_id, self.name, status.value, describe(exc))

    def _observe_run(self, *, succeeded: bool) -> None:
        # Not set when the attempt never ran (its start could not be recorded, or it was skipped).
        began = getattr(self.request, "run_began", None)
        if began is not None:
            _observe_run(TaskBackend.celery, self.request.run_queue, self.name, succeeded=succeeded, began=began)


# Each running Celery task's token for `request_id_var`, kept from prerun to postrun.
_request_id_tokens: dict[str, Token[str]] = {}


@task_prerun.connect
def _log_with_the_request_id(task_id: str, task: Task, **_: object) -> None:
    """While a Celery task runs, every log line (its own, its hooks', Celery's "succeeded")
    names the request that recorded it. Signals, not `TrackedTask.__call__`, because Celery
    calls the hooks and writes its own lines outside `__call__`."""
    _request_id_tokens[task_id] = request_id_var.set(message_header(task.request, REQUEST_ID_KEY) or NO_REQUEST_ID)


@task_postrun.connect
def _log_without_the_request_id(task_id: str, **_: object) -> None:
    token = _request_id_tokens.pop(task_id, None)
    if token is not None:
        request_id_var.reset(token)


def _run_attributes(backend: TaskBackend, queue: str, task_id: str, name: str) -> dict[str, str]:
    return {
        "messaging.system": backend.value,
        "messaging.operation.type": "process",
        "messaging.destination.name": queue,
        "messaging.message.id": task_id,
        "jobplatform.task.name": name,
    }


# Each running Celery task's `run` span (traces on), kept from prerun to postrun.
_run_spans: dict[str, RunningSpan] = {}


@task_prerun.connect
def _trace_the_run(task_id: str, task: Task, **_: object) -> None:
    """With traces on, each attempt of a Celery task is a `run` span (CONSUMER), child of the
    relay's `publish` span (the message's `traceparent` header; a retry sends it again), and
    everything the task does is inside it. Signals, as the request id, so the task record's
    hooks are inside too."""
    if not tracing_enabled():
        return
    queue = (task.request.delivery_info or {}).get("routing_key") or task.queue or ""
    running = start_span(
        f"run {queue}",
        kind="consumer",
        parent=trace_context_from(lambda key: message_header(task.request, key)),
        attributes=_run_attributes(TaskBackend.celery, queue, task_id, task.name),
    )
    if running is not None:
        _run_spans[task_id] = running


@task_postrun.connect
def _end_the_run(task_id: str, retval: Any = None, state: str | None = None, **_: object) -> None:
    running = _run_spans.pop(task_id, None)
    if running is not None:
        # A retry is a failed attempt too: its span says why, and the next attempt has its own.
        failed = state in ("FAILURE", "RETRY")
        running.end(retval if failed and isinstance(retval, BaseException) else None, failed=failed)


def start_job_span(job: Job) -> RunningSpan | None:
    """With traces on, the `run` span (CONSUMER) of one attempt of an RQ job, child of the
    relay's `publish` span (`traceparent` in the job's meta), current until it ends."""
    if not tracing_enabled():
        return None
    return start_span(
        f"run {job.origin}",
        kind="consumer",
        parent=trace_context_from(job.meta.get),
        attributes=_run_attributes(TaskBackend.rq, job.origin, job.id, job.func_name or ""),
    )


class JobBatch:
    """Task-record bookkeeping for a batch of RQ jobs run one after another by one worker
    (`core.rq_worker.BatchWorker`): one statement starts them all, one records their successes.

    While the batch is active, `@tracked_job` takes each job's attempt from here instead of
    writing its own start, and leaves its success here for `record_successes`. A job the
    batch could not start (database down, or not part of the batch) tracks itself as usual.
    """

    def __init__(self) -> None:
        self._attempts: dict[str, int | None] = {}
        self._succeeded: dict[str, Any] = {}

    def start(self, jobs: list[Job]) -> None:
        """Record the tracked jobs among `jobs` as started, in one statement."""
        tasks: dict[str, repository.StartingTask] = {}
        for job in jobs:
            if job.id not in tasks and is_tracked(job):
                payload = {"args": list(job.args), "kwargs": dict(job.kwargs)}
                tasks[job.id] = repository.StartingTask(job.id, job.origin, job.func_name, payload)
        if not tasks:
            return
        try:
            attempts = run_async(_start_many(list(tasks.values())))
        except Exception as error:
            # Database down, a deadlock, a row the statement refused: each job starts its own
            # record as it would alone (and, with the database still down, fails and retries).
            logger.warning(
                "could not start %d task records together (%s); each job starts its own", len(tasks), describe(error)
            )
            return
        self._attempts = {task_id: attempts.get(task_id) for task_id in tasks}

    def take_attempt(self, job_id: str) -> tuple[bool, int | None]:
        """(known, attempt): whether this batch started the job, and the attempt it recorded."""
        if job_id not in self._attempts:
            return False, None
        return True, self._attempts.pop(job_id)

    def will_run(self, job_id: str) -> bool:
        """False for a job this batch found finished already or past its attempt limit."""
        if job_id not in self._attempts:
            return True  # untracked, or left to track itself
        return _runs_without_check(self._attempts[job_id])

    def succeeded(self, job_id: str, result: Any) -> None:
        self._succeeded[job_id] = small_result(result)

    def record_successes(self) -> None:
        """Write the successes collected so far in one statement (and their run times in one
        Redis round trip)."""
        succeeded, self._succeeded = self._succeeded, {}
        if not succeeded:
            return
        shared_metrics().flush()
        try:
            run_async_when_database_answers(lambda: _succeed_many(succeeded))
        except Exception as error:
            if is_connection_error(error):
                logger.error("could not record %d successes (database unavailable: %s)", len(succeeded), error)
                return
            # Not the database's absence (a deadlock, say): one at a time, as jobs alone do.
            logger.warning(
                "could not record %d successes together (%s); recording each", len(succeeded), describe(error)
            )
            for task_id, result in succeeded.items():
                try:
                    _record(task_id, TaskStatus.succeeded, result=result)
                except Exception as single_error:
                    # The job did succeed; its record stays `started` until the stalled-task
                    # sweep marks it dead, which the log line explains. The batch goes on.
                    logger.error("task %s: could not record its success (%s)", task_id, describe(single_error))

    def hand_back(self, job_ids: list[str]) -> None:
        """The worker returned these jobs to their queue unrun: their records go back to queued."""
        started = [job_id for job_id in job_ids if self._attempts.pop(job_id, None) is not None]
        return_to_queue(started)

    @contextmanager
    def active(self) -> Iterator[JobBatch]:
        token = _current_batch.set(self)
        try:
            yield self
        finally:
            _current_batch.reset(token)


_current_batch: ContextVar[JobBatch | None] = ContextVar("current_job_batch", default=None)


def return_to_queue(task_ids: list[str]) -> None:
    """Jobs a worker put back on their queue unrun (a stop): their records go back to
    queued, the start that did not finish not counted as an attempt."""
    if not task_ids:
        return
    try:
        run_async(_unstart_many(task_ids))
    except Exception as error:
        # The jobs are back in their queue already; the records say started (one attempt
        # too many) until the jobs run again.
        logger.error("could not return %d task records to queued (%s)", len(task_ids), describe(error))


async def _start_many(tasks: list[repository.StartingTask]) -> dict[str, int]:
    async with get_database_router().write_session() as session:
        return await repository.start_many(session, backend=TaskBackend.rq, tasks=tasks)


async def _succeed_many(results: dict[str, Any]) -> None:
    async with get_database_router().write_session() as session:
        await repository.succeed_many(session, results)


async def _unstart_many(task_ids: list[str]) -> None:
    async with get_database_router().write_session() as session:
        await repository.unstart_many(session, task_ids)


def job_function_attribute(job: Job, name: str) -> Any:
    """An attribute of the job's function (a mark a decorator left), or None."""
    try:
        return getattr(job.func, name, None)
    except Exception:
        # A job whose function cannot be imported fails when it runs, with RQ's own message.
        return None


def is_tracked(job: Job) -> bool:
    """Whether the job's function is wrapped with `@tracked_job` (it keeps a task record)."""
    return bool(job_function_attribute(job, TRACKED_MARK))


def _runs_without_check(attempt: int | None) -> bool:
    """Whether a job whose batch start recorded `attempt` runs straight away (not finished
    already, not past its attempt limit); otherwise `_admit` decides and says why."""
    return attempt is not None and attempt <= get_settings().task_max_attempts


TRACKED_MARK = "keeps_task_record"


def tracked_job(func: Callable[P, R]) -> Callable[P, R]:
    """Wrap an RQ job function with a durable record and duplicate skipping.

    Called outside a worker (a plain function call), it just runs.
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        job = get_current_job()
        if job is None:
            return func(*args, **kwargs)
        batch = _current_batch.get()
        started_by_batch, attempt = batch.take_attempt(job.id) if batch is not None else (False, None)
        if started_by_batch and _runs_without_check(attempt):
            # The common case, without a trip through the event loop; the batch worker logs
            # one line per batch, so the per-job line is DEBUG.
            should_run = True
            logger.debug("task %s (%s) started, attempt %d", job.id, job.func_name, attempt)
        elif started_by_batch:
            should_run = run_async(_admit(job.id, job.func_name, attempt))
        else:
            payload = {"args": list(args), "kwargs": dict(kwargs)}
            attempt = run_async(_start(job.id, TaskBackend.rq, job.origin, job.func_name, payload))
            should_run = attempt is not None
        if not should_run:
            return None  # type: ignore[return-value]
        _observe_start(TaskBackend.rq, job.origin, job.func_name, attempt, job.meta.get(COMMITTED_AT_KEY))
        began = time.monotonic()
        try:
            with reading_after(job.meta.get(DB_POSITION_KEY)):
                result = func(*args, **kwargs)
        except Exception as error:
            if isinstance(error, PermanentTaskError):
                job.retries_left = 0  # RQ retries any exception; this one must not be
            _observe_run(TaskBackend.rq, job.origin, job.func_name, succeeded=False, began=began)
            shared_metrics().flush()
            raise
        _observe_run(TaskBackend.rq, job.origin, job.func_name, succeeded=True, began=began)
        if started_by_batch:
            assert batch is not None
            batch.succeeded(job.id, result)  # its figures go with the batch's successes
            return result
        shared_metrics().flush()  # first: a record that says succeeded has its figures in
        _record(job.id, TaskStatus.succeeded, result=small_result(result))
        logger.info("job %s (%s) succeeded", job.id, job.func_name)
        return result

    setattr(wrapper, TRACKED_MARK, True)
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

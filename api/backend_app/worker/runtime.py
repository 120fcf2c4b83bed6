"""Running async services from synchronous worker code (Celery tasks, RQ jobs).

Each worker process gets its own event loop and its own database engines, made on first
use. A forked child (Celery's pool, RQ's work horse) never reuses its parent's loop or
pooled connections: the pid check below drops them without closing the parent's sockets.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from billiard.exceptions import SoftTimeLimitExceeded
from rq.timeouts import BaseTimeoutException

from backend_app.db import lifecycle
from backend_app.db.errors import is_connection_error

T = TypeVar("T")

logger = logging.getLogger(__name__)

# How long an interrupted task gets to unwind (roll back, release its connection).
CANCEL_WAIT_SECONDS = 5

# Raised by a signal handler when a job runs too long (RQ) or past its soft limit (Celery).
INTERRUPTIONS = (BaseTimeoutException, SoftTimeLimitExceeded)

_loop: asyncio.AbstractEventLoop | None = None
_loop_pid: int | None = None
_interruption: BaseException | None = None


def _forget_inherited_state() -> None:
    global _loop
    lifecycle.forget_inherited_router()
    _loop = None


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` to completion on this process's event loop."""
    global _loop, _loop_pid, _interruption
    if _loop_pid != os.getpid():
        _forget_inherited_state()
        _loop_pid = os.getpid()
    if _loop is None:
        _loop = asyncio.new_event_loop()
        _loop.set_exception_handler(_keep_interruptions)
        # A worker that exits normally closes its pools and stops the replica checks.
        atexit.unregister(shutdown)
        atexit.register(shutdown)
    lifecycle.init_database()
    _interruption = None
    task = _loop.create_task(coroutine)
    try:
        result = _loop.run_until_complete(task)
    except BaseException:
        # Interrupted from outside (RQ's job timeout is a signal raising in this thread, a
        # second Ctrl+C): the task would otherwise stay scheduled on the loop and go on
        # during the next job's calls, committing work whose job has already failed.
        # Cancelled here, its sessions roll back and return their connections.
        interruption = _take_interruption()
        _cancel(_loop, task)
        if interruption is not None:
            raise interruption from None
        raise
    interruption = _take_interruption()
    if interruption is not None:
        raise interruption  # it landed in a callback while the task was finishing
    return result


# How long a worker waits for the database to record an outcome that already happened (an
# email handed to the SMTP server, a task's end): a primary restart takes seconds.
RECORD_WAIT_SECONDS = 60.0


def run_async_when_database_answers(
    make_coroutine: Callable[[], Coroutine[Any, Any, T]], *, seconds: float = RECORD_WAIT_SECONDS
) -> T:
    """`run_async(make_coroutine())`, tried again while the database cannot be reached, for
    up to `seconds`; then the last connection error is raised. For writes that record what
    already happened, which a short outage must not turn into a wrong or missing record."""
    deadline = time.monotonic() + seconds
    delay = 0.25
    while True:
        try:
            return run_async(make_coroutine())
        except Exception as error:
            if not is_connection_error(error) or time.monotonic() + delay > deadline:
                raise
            logger.warning("database unavailable (%s); trying again in %.1fs", type(error).__name__, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def _keep_interruptions(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """A job timeout whose signal lands inside one of the loop's callbacks (not in a task,
    not in the wait for I/O) would only be logged by asyncio, and the job would run on with
    no timeout left: keep it and stop the loop, so `run_async` raises it."""
    global _interruption
    error = context.get("exception")
    if isinstance(error, INTERRUPTIONS):
        _interruption = error
        loop.stop()
        return
    loop.default_exception_handler(context)


def _take_interruption() -> BaseException | None:
    global _interruption
    interruption, _interruption = _interruption, None
    return interruption


def _cancel(loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
    if task.done():
        return
    task.cancel()
    try:
        loop.run_until_complete(asyncio.wait([task], timeout=CANCEL_WAIT_SECONDS))
    except Exception as error:  # the original error is the one to raise; say this one
        # (SystemExit and KeyboardInterrupt, a stop forced during the wait, go through.)
        logger.warning("could not finish cancelling an interrupted task: %s", type(error).__name__)
        return
    if not task.done():
        logger.warning("an interrupted task did not stop within %ss", CANCEL_WAIT_SECONDS)
    elif not task.cancelled() and task.exception() is not None:
        # Retrieved, so asyncio does not report it again later; the interruption is the story.
        logger.info("an interrupted task ended with %s while unwinding", type(task.exception()).__name__)


def shutdown() -> None:
    """Close this process's engines and loop (worker shutdown; tests that call worker code)."""
    global _loop, _loop_pid
    if _loop is not None and _loop_pid == os.getpid() and not _loop.is_closed():
        # Bounded: a server that stopped answering must not hold up the worker's exit.
        try:
            _loop.run_until_complete(asyncio.wait_for(lifecycle.close_database(), timeout=5))
        except TimeoutError:
            logger.warning("database connections did not close within 5s; exiting anyway")
        _loop.close()
    _loop = None
    _loop_pid = None

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
from collections.abc import Coroutine
from typing import Any, TypeVar

from backend_app.core import read_replica

T = TypeVar("T")

logger = logging.getLogger(__name__)

_loop: asyncio.AbstractEventLoop | None = None
_loop_pid: int | None = None


def _forget_inherited_state() -> None:
    global _loop
    router = read_replica._router
    if router is not None:
        # close=False: the connections belong to the parent process; do not close them.
        for engine in router.engines():
            engine.sync_engine.dispose(close=False)
        router.monitor.forget()
        read_replica._router = None
    _loop = None


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` to completion on this process's event loop."""
    global _loop, _loop_pid
    if _loop_pid != os.getpid():
        _forget_inherited_state()
        _loop_pid = os.getpid()
    if _loop is None:
        _loop = asyncio.new_event_loop()
        # A worker that exits normally closes its pools and stops the replica checks.
        atexit.unregister(shutdown)
        atexit.register(shutdown)
    read_replica.init_database()
    return _loop.run_until_complete(coroutine)


def shutdown() -> None:
    """Close this process's engines and loop (worker shutdown; tests that call worker code)."""
    global _loop, _loop_pid
    if _loop is not None and _loop_pid == os.getpid() and not _loop.is_closed():
        # Bounded: a server that stopped answering must not hold up the worker's exit.
        try:
            _loop.run_until_complete(asyncio.wait_for(read_replica.close_database(), timeout=5))
        except TimeoutError:
            logger.warning("database connections did not close within 5s; exiting anyway")
        _loop.close()
    _loop = None
    _loop_pid = None

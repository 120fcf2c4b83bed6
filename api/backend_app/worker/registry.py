"""The task registry: every background task declared once, in its domain's `tasks.py`.

    # notifications/tasks.py
    @rq_task(queue=NOTIFICATIONS_QUEUE)
    def send_new_follower_notification_job(follower_id: int, follower_name: str, followed_user_id: int) -> ...:
        ...

    # follows/service.py: the declaration is the handle; its arguments are checked here
    await outbox.add(session, tasks.send_new_follower_notification_job.call(follower_id=..., ...), owner_id=...)

A declaration gives the task its wire name, backend and queue (the queue carries the retry
policy and the time limit: `worker/queues.py`), the keyword arguments to hide once it ran
(`redacted_kwargs`) and, for periodic tasks, beat's schedule. `Task.call(...)` binds the
arguments to the function's signature, so a missing or unknown argument fails in the caller
(and its unit test), never in a worker; a wrong task is an AttributeError at import.

Names are the wire format, so they never change under queued messages: an RQ task is named
by its function's dotted path; a Celery task by its `name`, which for the tasks that lived in
`core/celery_tasks.py` stays `backend_app.core.celery_tasks.<function>`. The RQ paths from
before the move (`backend_app.core.rq_tasks.<function>`) resolve through that module.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, ParamSpec, TypeVar

from celery import shared_task
from celery.schedules import BaseSchedule

import backend_app
from backend_app.core.config import get_settings
from backend_app.db.errors import is_connection_error
from backend_app.tasks.errors import PermanentTaskError, TransientTaskError
from backend_app.tasks.models import TaskBackend
from backend_app.worker.queues import EMAIL_QUEUE, QUEUE_BACKENDS
from backend_app.worker.tracking import TrackedTask, tracked_job

P = ParamSpec("P")
R = TypeVar("R")

# The module of each domain package that holds its tasks.
TASK_MODULE = "tasks"


@dataclass(frozen=True)
class TaskCall:
    """One run of a task with its arguments, checked against the task's signature."""

    task: Task[Any, Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


@dataclass(frozen=True)
class Schedule:
    """A beat entry: run the task on this schedule (Celery tasks only)."""

    entry: str
    schedule: BaseSchedule


@dataclass(eq=False)
class Task(Generic[P, R]):
    """A declared background task. Calling it runs it here and now (tests, scripts); other
    attributes are its target's (a Celery task's `delay`, an RQ function's marks)."""

    name: str
    backend: TaskBackend
    queue: str
    target: Callable[..., Any]
    signature: inspect.Signature
    redacted_kwargs: tuple[str, ...] = ()
    tracked: bool = True
    schedule: Schedule | None = None
    function_name: str = field(default="")

    def call(self, *args: P.args, **kwargs: P.kwargs) -> TaskCall:
        """This task with these arguments, to hand to `outbox.add`."""
        try:
            self.signature.bind(*args, **kwargs)
        except TypeError as error:
            raise TypeError(f"{self.name}: {error}") from None
        return TaskCall(self, tuple(args), dict(kwargs))

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.target(*args, **kwargs)  # type: ignore[no-any-return]

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        return getattr(self.target, attribute)


_tasks: dict[str, Task[Any, Any]] = {}
_loaded = False


def _register(task: Task[P, R]) -> Task[P, R]:
    if task.queue not in QUEUE_BACKENDS or QUEUE_BACKENDS[task.queue] is not task.backend:
        raise ValueError(f"task {task.name}: {task.queue!r} is not a {task.backend.value} queue")
    known = _tasks.get(task.name)
    if known is not None and known.target is not task.target and _origin(known) != _origin(task):
        raise ValueError(f"task {task.name} is declared twice ({_origin(known)} and {_origin(task)})")
    _tasks[task.name] = task
    return task


def _origin(task: Task[Any, Any]) -> str:
    function = inspect.unwrap(task.target) if callable(task.target) else task.target
    return f"{getattr(function, '__module__', '?')}.{task.function_name}"


def celery_task(
    *,
    name: str | None = None,
    queue: str = EMAIL_QUEUE,
    redacted_kwargs: tuple[str, ...] = (),
    schedule: BaseSchedule | None = None,
    tracked: bool = True,
) -> Callable[[Callable[P, R]], Task[P, R]]:
    """Declare a Celery task. Tracked tasks keep a task record, retry transient errors up to
    TASK_MAX_RETRIES and skip a redelivery of a finished run (`TrackedTask`)."""

    def declare(function: Callable[P, R]) -> Task[P, R]:
        task_name = name or f"{function.__module__}.{function.__name__}"
        options: dict[str, Any] = {"name": task_name, "ignore_result": True}
        if tracked:
            settings = get_settings()
            options.update(
                base=TrackedTask,
                max_retries=settings.task_max_retries,
                retry_backoff_max=settings.task_retry_backoff_max,
                redacted_kwargs=redacted_kwargs,
            )
        return _register(
            Task(
                name=task_name,
                backend=TaskBackend.celery,
                queue=queue,
                target=shared_task(**options)(database_outage_retried(function) if tracked else function),
                signature=inspect.signature(function),
                redacted_kwargs=redacted_kwargs,
                tracked=tracked,
                schedule=Schedule(function.__name__.replace("_", "-"), schedule) if schedule is not None else None,
                function_name=function.__name__,
            )
        )

    return declare


def database_outage_retried(function: Callable[P, R]) -> Callable[P, R]:
    """A database that cannot be reached (a primary restarting) makes the attempt a
    `TransientTaskError`, which `TrackedTask` retries, never a failure: inside `run`, where
    Celery's autoretry sees it. (RQ retries every exception, so its jobs need no wrapper.)"""

    @functools.wraps(function)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return function(*args, **kwargs)
        except (TransientTaskError, PermanentTaskError):
            raise
        except Exception as error:
            if not is_connection_error(error):
                raise
            raise TransientTaskError(f"database unavailable: {type(error).__name__}: {error}") from error

    return run


def rq_task(*, queue: str, tracked: bool = True) -> Callable[[Callable[P, R]], Task[P, R]]:
    """Declare an RQ job function, named by its dotted path. Tracked jobs keep a task record
    and skip a redelivery of a finished run (`tracked_job`); retries and the time limit are
    the queue's (`QUEUE_CONFIG`)."""

    def declare(function: Callable[P, R]) -> Task[P, R]:
        return _register(
            Task(
                name=f"{function.__module__}.{function.__name__}",
                backend=TaskBackend.rq,
                queue=queue,
                target=tracked_job(function) if tracked else function,
                signature=inspect.signature(function),
                tracked=tracked,
                function_name=function.__name__,
            )
        )

    return declare


def task_modules() -> list[str]:
    """`backend_app.<package>.tasks` for every package that has one (found without importing)."""
    names = []
    for package in pkgutil.iter_modules(backend_app.__path__):
        module = f"backend_app.{package.name}.{TASK_MODULE}"
        if package.ispkg and importlib.util.find_spec(module) is not None:
            names.append(module)
    return sorted(names)


def load_all() -> dict[str, Task[Any, Any]]:
    """Import every domain's tasks module once; every declared task, by name."""
    global _loaded
    if not _loaded:
        for module in task_modules():
            importlib.import_module(module)
        _loaded = True
    return dict(_tasks)


def find(name: str) -> Task[Any, Any] | None:
    return load_all().get(name)


def beat_schedule() -> dict[str, dict[str, Any]]:
    """Celery beat's schedule, from the tasks that declared one."""
    return {
        task.schedule.entry: {"task": task.name, "schedule": task.schedule.schedule}
        for task in load_all().values()
        if task.schedule is not None
    }


def moved_target(backend: TaskBackend, function_name: str) -> Callable[..., Any]:
    """The task that `backend_app.core.{celery,rq}_tasks.<function_name>` used to be (the old
    modules resolve their names through here)."""
    for task in load_all().values():
        if task.backend is backend and task.function_name == function_name:
            return task.target
    raise AttributeError(function_name)

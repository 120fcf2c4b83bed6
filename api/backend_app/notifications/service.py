"""Notifying a user: stored in-app always, pushed to their devices when they want it.

Runs in the RQ worker. The in-app row is keyed by the task id, so a redelivered job
stores it once; pushes go out only the first time.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, ParamSpec

import httpx
from rq import get_current_job
from rq.job import Job

from backend_app.core.config import get_settings
from backend_app.core.read_replica import get_database_router
from backend_app.core.worker_runtime import run_async
from backend_app.notifications import repository
from backend_app.notifications.push import Push, Target, provider_for

logger = logging.getLogger(__name__)

P = ParamSpec("P")

# Job meta key: the device tokens earlier attempts of a notification job pushed to.
PUSHED_TOKENS_KEY = "pushed_tokens"

NOTIFICATION_TYPES = ("follow", "like", "comment", "message", "system")
TITLE_LIMIT = 200


async def _store(task_id: str | None, user_id: int, type: str, push: Push) -> tuple[int, list[Target]]:
    """Store the notification once; return it and the devices still to push to."""
    async with get_database_router().write_session() as session:
        notification_id, already_pushed, reached = await repository.add_once(
            session, task_id=task_id, user_id=user_id, type=type, title=push.title, body=push.body, data=push.data
        )
        if already_pushed or not await repository.wants_push(session, user_id, type):
            return notification_id, []
        devices = await repository.devices_of(session, user_id)
        return notification_id, [Target(d.token, d.platform) for d in devices if d.token not in reached]


async def _remember_reached(notification_id: int, tokens: set[str]) -> None:
    async with get_database_router().write_session() as session:
        await repository.remember_reached(session, notification_id, tokens)


def _remember_reached_quietly(notification_id: int, tokens: set[str]) -> None:
    """Record the devices a failing attempt reached; the job's meta keeps them too, so a
    database that is down now only weakens this to what RQ alone would do."""
    try:
        run_async(_remember_reached(notification_id, tokens))
    except Exception as error:
        logger.warning("notification %d: could not record the devices reached (%s)", notification_id, error)


async def _after_push(notification_id: int, invalid_tokens: set[str]) -> None:
    async with get_database_router().write_session() as session:
        await repository.mark_pushed(session, notification_id)
        await repository.remove_tokens(session, invalid_tokens)


@dataclass(frozen=True)
class Notice:
    """What a notification job tells a user (its function's arguments turned into words)."""

    user_id: int
    type: str
    title: str
    body: str
    data: dict[str, Any] = field(default_factory=dict)

    def as_push(self) -> Push:
        # Titles quote display names, which can be longer than the column allows.
        title = self.title if len(self.title) <= TITLE_LIMIT else self.title[: TITLE_LIMIT - 1] + "…"
        return Push(title=title, body=self.body, data=self.data or {})


# Notifications a batch worker stored before running their jobs: task id -> (id, targets).
_stored_in_advance: ContextVar[dict[str, tuple[int, list[Target]]] | None] = ContextVar(
    "notifications_stored_in_advance", default=None
)


async def _store_many(notices: dict[str, Notice]) -> dict[str, tuple[int, list[Target]]]:
    pushes = {task_id: notice.as_push() for task_id, notice in notices.items()}
    rows = {
        task_id: {"user_id": notice.user_id, "type": notice.type, **vars(pushes[task_id])}
        for task_id, notice in notices.items()
    }
    async with get_database_router().write_session() as session:
        stored = await repository.add_many_once(session, rows)
    return {
        task_id: (
            row.id,
            []
            if row.already_pushed or not row.wants_push
            else [Target(*device) for device in row.devices if device[0] not in row.pushed_tokens],
        )
        for task_id, row in stored.items()
    }


@contextmanager
def stored_in_advance(notices: dict[str, Notice]) -> Iterator[None]:
    """Store the notifications of many jobs (task id -> notice) in one statement; while the
    block runs, `notify` for those task ids finds its row stored and only pushes."""
    stored = run_async(_store_many(notices))
    token = _stored_in_advance.set(stored)
    try:
        yield
    finally:
        _stored_in_advance.reset(token)


def notification_job(describe: Callable[P, Notice]) -> Callable[P, dict[str, Any]]:
    """Turn a function that describes a notification into the RQ job that delivers it.

    The job keeps `describe`'s name and arguments (callers' contract). `prepare_batch` lets
    `core.rq_worker.BatchWorker` store a whole batch's notifications in one statement.
    """

    @functools.wraps(describe)
    def job(*args: P.args, **kwargs: P.kwargs) -> dict[str, Any]:
        current = get_current_job()
        notice = describe(*args, **kwargs)
        if current is None:
            return notify(task_id=None, notice=notice)
        # Devices an earlier attempt of this job reached (kept with the job in Redis).
        pushed_before = set(current.meta.get(PUSHED_TOKENS_KEY, ()))
        reached: set[str] = set()
        try:
            return notify(task_id=current.id, notice=notice, pushed_before=pushed_before, reached=reached)
        except BaseException:
            # Whatever failed after some devices had the push (the provider part-way, the job's
            # timeout, the database before `pushed_at` was set), the retry must not push to
            # them again.
            if reached:
                current.meta[PUSHED_TOKENS_KEY] = sorted(pushed_before | reached)
                current.save_meta()
            raise

    def prepare_batch(jobs: list[Job]) -> Any:
        return stored_in_advance({queued.id: describe(*queued.args, **queued.kwargs) for queued in jobs})

    job.prepare_batch = prepare_batch  # type: ignore[attr-defined]
    return job


def notify(
    *, task_id: str | None, notice: Notice, pushed_before: Collection[str] = (), reached: set[str] | None = None
) -> dict[str, Any]:
    """Store in-app and push. A push that fails transiently raises, and the retried job
    pushes again without storing a second notification, leaving out the devices in
    `pushed_before` (reached by an earlier attempt). Devices reached now are added to
    `reached` as they are."""
    push = notice.as_push()
    prepared = _stored_in_advance.get()
    if prepared is not None and task_id in prepared:
        notification_id, targets = prepared.pop(task_id)
    else:
        notification_id, targets = run_async(_store(task_id, notice.user_id, notice.type, push))
    if not targets:
        return {"notification_id": notification_id, "pushed": 0}
    remaining = [target for target in targets if target.token not in pushed_before]
    invalid: set[str] = set()
    reached = reached if reached is not None else set()
    if remaining:
        settings = get_settings()
        try:
            with httpx.Client(timeout=settings.push_timeout) as client:
                invalid = provider_for(settings, client).send(remaining, push, reached)
        except BaseException:
            if reached:
                _remember_reached_quietly(notification_id, reached)
            raise
    run_async(_after_push(notification_id, invalid))
    if invalid:
        logger.info("removed %d device token(s) the provider reported invalid", len(invalid))
    return {
        "notification_id": notification_id,
        "pushed": len(targets) - len(invalid),
        "invalid_tokens_removed": len(invalid),
    }

"""Notifications: changes to the in-app list (requests), and notifying a user (RQ worker).

A notification job stores the in-app row keyed by its task id, so a redelivered job stores it
once, and pushes to the user's devices only the first time. Each job runs as one coroutine
(one `run_async`); the push providers' blocking HTTP calls run in a thread.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, copy_context
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, ParamSpec

import httpx
from rq import get_current_job
from rq.job import Job

from backend_app.core.config import get_settings
from backend_app.db.lifecycle import get_database_router
from backend_app.db.sessions import AsyncReadSession, AsyncWriteSession
from backend_app.notifications import repository
from backend_app.notifications.models import Device, Notification
from backend_app.notifications.push import Push, Target, provider_for
from backend_app.worker.runtime import run_async

logger = logging.getLogger(__name__)

P = ParamSpec("P")

# Job meta key: the device tokens earlier attempts of a notification job pushed to.
PUSHED_TOKENS_KEY = "pushed_tokens"

NOTIFICATION_TYPES = ("follow", "like", "comment", "message", "system")
TITLE_LIMIT = 200


class NotificationNotFound(Exception):
    pass


class DeviceOfAnotherAccount(Exception):
    pass


class DeviceNotFound(Exception):
    pass


async def mark_all_read(*, session: AsyncWriteSession, user_id: int) -> int:
    """How many of the user's notifications this marked read."""
    return await repository.mark_read(session, user_id)


async def mark_read(*, session: AsyncWriteSession, user_id: int, notification_id: int) -> Notification:
    """One of the user's notifications, marked read; another user's is as missing as an unknown one."""
    notification = await repository.get(session, notification_id)
    if notification is None or notification.user_id != user_id:
        raise NotificationNotFound(notification_id)
    await repository.mark_read(session, user_id, notification_id)
    await session.refresh(notification)
    return notification


async def register_device(
    *, session: AsyncWriteSession, user_id: int, token: str, platform: str
) -> tuple[Device, bool]:
    """The device, and whether it is new. A token belongs to one account until that account
    removes it (signing out on the device): the same account registering it again only updates
    its platform; another account is refused, so nobody can take over a device's pushes."""
    registered = await repository.register_device(session, user_id=user_id, token=token, platform=platform)
    if registered is None:
        raise DeviceOfAnotherAccount
    return registered


async def remove_device(*, session: AsyncWriteSession, user_id: int, device_id: int) -> None:
    if not await repository.remove_device(session, user_id=user_id, device_id=device_id):
        raise DeviceNotFound(device_id)


async def set_preference(*, session: AsyncWriteSession, user_id: int, type: str, push: bool, email: bool) -> None:
    await repository.set_preference(session, user_id=user_id, type=type, push=push, email=email)


@dataclass(frozen=True)
class PreferenceInForce:
    type: str
    push: bool
    email: bool
    default: bool  # nothing set for this type: the defaults apply


async def preferences_in_force(*, session: AsyncReadSession, user_id: int) -> list[PreferenceInForce]:
    """One entry per notification type: what the user set, or the defaults the push path and
    the email check apply when they set nothing (`repository.DEFAULT_PUSH`, `DEFAULT_EMAIL`)."""
    chosen = {p.type: p for p in await repository.preferences_of(session, user_id)}
    return [
        PreferenceInForce(type=type, push=chosen[type].push, email=chosen[type].email, default=False)
        if type in chosen
        else PreferenceInForce(type=type, push=repository.DEFAULT_PUSH, email=repository.DEFAULT_EMAIL, default=True)
        for type in NOTIFICATION_TYPES
    ]


async def delete_read_notifications() -> int:
    """Worker side (the daily clean-up): delete what was read NOTIFICATION_RETENTION_DAYS ago."""
    cutoff = datetime.now(UTC) - timedelta(days=get_settings().notification_retention_days)
    async with get_database_router().write_session() as session:
        return await repository.delete_read_before(session, cutoff)


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


async def _remember_reached_quietly(notification_id: int, tokens: set[str]) -> None:
    """Record the devices a failing attempt reached; the job's meta keeps them too, so a
    database that is down now only weakens this to what RQ alone would do."""
    try:
        await _remember_reached(notification_id, tokens)
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
        task_id: {
            "user_id": notice.user_id,
            "type": notice.type,
            "title": pushes[task_id].title,
            "body": pushes[task_id].body,
            "data": pushes[task_id].data,
        }
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
    return run_async(
        _notify(
            task_id=task_id,
            notice=notice,
            pushed_before=pushed_before,
            reached=reached if reached is not None else set(),
        )
    )


async def _notify(
    *, task_id: str | None, notice: Notice, pushed_before: Collection[str], reached: set[str]
) -> dict[str, Any]:
    push = notice.as_push()
    prepared = _stored_in_advance.get()
    if prepared is not None and task_id in prepared:
        notification_id, targets = prepared.pop(task_id)
    else:
        notification_id, targets = await _store(task_id, notice.user_id, notice.type, push)
    # The notification row is one per task, so its id names the push on every attempt.
    push = replace(push, key=f"notification-{notification_id}")
    if not targets:
        return {"notification_id": notification_id, "pushed": 0}
    remaining = [target for target in targets if target.token not in pushed_before]
    invalid: set[str] = set()
    if remaining:
        try:
            invalid = await _push(remaining, push, reached)
        except BaseException:
            if reached:
                await _remember_reached_quietly(notification_id, reached)
            raise
    await _after_push(notification_id, invalid)
    if invalid:
        logger.info("removed %d device token(s) the provider reported invalid", len(invalid))
    return {
        "notification_id": notification_id,
        "pushed": len(targets) - len(invalid),
        "invalid_tokens_removed": len(invalid),
    }


# How long an interrupted job (its timeout) waits for the push request in flight to be
# answered, so that `reached` says whether that device has it; within run_async's unwinding.
PUSH_IN_FLIGHT_WAIT_SECONDS = 2.0


class PushInterrupted(Exception):
    """The job was interrupted: no further push request leaves."""


async def _push(targets: list[Target], push: Push, reached: set[str]) -> set[str]:
    """Push through the provider in a thread (its HTTP client blocks); returns the invalid tokens.

    When the job is interrupted the thread cannot be, so it is told to send no further
    request, and the one in flight gets a moment to be answered: as when the interruption
    landed in the request itself, only that device may not be known to have the push.
    """
    settings = get_settings()
    interrupted = threading.Event()

    def refuse_when_interrupted(request: httpx.Request) -> None:
        if interrupted.is_set():
            raise PushInterrupted(f"not pushed to {request.url.host}: the job was interrupted")

    def send() -> set[str]:
        hooks = {"request": [refuse_when_interrupted]}
        with httpx.Client(timeout=settings.push_timeout, event_hooks=hooks) as client:
            return provider_for(settings, client).send(targets, push, reached)

    # In this context: with traces on, the provider's HTTP calls are spans of the job's run span.
    sending = asyncio.get_running_loop().run_in_executor(None, copy_context().run, send)
    try:
        # Shielded: cancelling the job must not stop waiting for the thread below.
        return await asyncio.shield(sending)
    except BaseException:
        if not sending.done():  # interrupted (cancelled by run_async) while the thread pushes
            interrupted.set()
            sending.add_done_callback(_log_interrupted_push)
            await asyncio.wait({sending}, timeout=PUSH_IN_FLIGHT_WAIT_SECONDS)
        raise


def _log_interrupted_push(ended: asyncio.Future[set[str]]) -> None:
    # The job failed with its interruption; how the push it stopped ended is only worth a line.
    if not ended.cancelled() and ended.exception() is not None:
        logger.info("an interrupted push ended: %s", ended.exception())

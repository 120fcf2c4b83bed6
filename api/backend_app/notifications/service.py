"""Notifying a user: stored in-app always, pushed to their devices when they want it.

Runs in the RQ worker. The in-app row is keyed by the task id, so a redelivered job
stores it once; pushes go out only the first time.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from backend_app.core.config import get_settings
from backend_app.core.read_replica import get_database_router
from backend_app.core.worker_runtime import run_async
from backend_app.notifications import repository
from backend_app.notifications.push import Push, Target, provider_for

logger = logging.getLogger(__name__)

NOTIFICATION_TYPES = ("follow", "like", "comment", "message", "system")
TITLE_LIMIT = 200


async def _store(task_id: str | None, user_id: int, type: str, push: Push) -> tuple[int, list[Target]]:
    """Store the notification once; return it and the devices still to push to."""
    async with get_database_router().write_session() as session:
        notification_id, already_pushed = await repository.add_once(
            session, task_id=task_id, user_id=user_id, type=type, title=push.title, body=push.body, data=push.data
        )
        if already_pushed or not await repository.wants_push(session, user_id, type):
            return notification_id, []
        return notification_id, [Target(d.token, d.platform) for d in await repository.devices_of(session, user_id)]


async def _after_push(notification_id: int, invalid_tokens: set[str]) -> None:
    async with get_database_router().write_session() as session:
        await repository.mark_pushed(session, notification_id)
        await repository.remove_tokens(session, invalid_tokens)


def notify(*, task_id: str | None, user_id: int, type: str, title: str, body: str, data: dict[str, Any] | None) -> dict:
    """Store in-app and push. A push that fails transiently raises, and the retried job
    pushes again without storing a second notification."""
    # Titles quote display names, which can be longer than the column allows.
    title = title if len(title) <= TITLE_LIMIT else title[: TITLE_LIMIT - 1] + "…"
    push = Push(title=title, body=body, data=data or {})
    notification_id, targets = run_async(_store(task_id, user_id, type, push))
    if not targets:
        return {"notification_id": notification_id, "pushed": 0}
    settings = get_settings()
    with httpx.Client(timeout=settings.push_timeout) as client:
        invalid = provider_for(settings, client).send(targets, push)
    run_async(_after_push(notification_id, invalid))
    if invalid:
        logger.info("removed %d device token(s) the provider reported invalid", len(invalid))
    return {
        "notification_id": notification_id,
        "pushed": len(targets) - len(invalid),
        "invalid_tokens_removed": len(invalid),
    }

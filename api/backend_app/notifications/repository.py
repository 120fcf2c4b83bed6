"""SQL for notifications, devices and preferences."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from backend_app.notifications.models import Device, Notification, NotificationPreference


async def add_once(
    session: AsyncSession, *, task_id: str | None, user_id: int, type: str, title: str, body: str, data: dict[str, Any]
) -> tuple[int, bool, frozenset[str]]:
    """Store the in-app notification once per task; returns (its id, already pushed, the
    devices an earlier attempt reached)."""
    statement = (
        insert(Notification)
        .values(task_id=task_id, user_id=user_id, type=type, title=title, body=body, data=data)
        .on_conflict_do_nothing(index_elements=[Notification.task_id])
        .returning(Notification.id)
    )
    new_id = (await session.execute(statement)).scalar_one_or_none()
    if new_id is not None:
        return new_id, False, frozenset()
    existing = (
        await session.execute(
            select(Notification.id, Notification.pushed_at, Notification.pushed_tokens).where(
                Notification.task_id == task_id
            )
        )
    ).one()
    return existing.id, existing.pushed_at is not None, frozenset(existing.pushed_tokens)


# Many notifications in one statement: each stored once per task id, and for each, what
# pushing it needs (already pushed? does the user want this type pushed? their devices).
# The SELECT reads the snapshot before the INSERT, so `existing` is only a redelivery's row.
_ADD_MANY_ONCE = text(
    """
    WITH incoming AS (
        SELECT * FROM unnest(
            CAST(:task_ids AS varchar[]), CAST(:user_ids AS bigint[]), CAST(:types AS varchar[]),
            CAST(:titles AS varchar[]), CAST(:bodies AS text[]), CAST(:datas AS jsonb[])
        ) AS incoming(task_id, user_id, type, title, body, data)
    ), inserted AS (
        INSERT INTO notifications (task_id, user_id, type, title, body, data)
        SELECT task_id, user_id, type, title, body, data FROM incoming
        ON CONFLICT (task_id) DO NOTHING
        RETURNING id, task_id
    )
    SELECT incoming.task_id,
           coalesce(inserted.id, existing.id) AS id,
           existing.pushed_at IS NOT NULL AS already_pushed,
           coalesce(existing.pushed_tokens, '{}') AS pushed_tokens,
           coalesce(preference.push, true) AS wants_push,
           coalesce(devices.tokens, '{}') AS tokens,
           coalesce(devices.platforms, '{}') AS platforms
    FROM incoming
    LEFT JOIN inserted ON inserted.task_id = incoming.task_id
    LEFT JOIN notifications existing ON existing.task_id = incoming.task_id
    LEFT JOIN notification_preferences preference
           ON preference.user_id = incoming.user_id AND preference.type = incoming.type
    LEFT JOIN LATERAL (
        SELECT array_agg(token ORDER BY id) AS tokens, array_agg(platform ORDER BY id) AS platforms
        FROM devices WHERE devices.user_id = incoming.user_id
    ) devices ON true
    """
)


@dataclass(frozen=True)
class StoredNotification:
    id: int
    already_pushed: bool
    wants_push: bool
    devices: list[tuple[str, str]]  # (token, platform)
    pushed_tokens: frozenset[str]  # devices an earlier attempt reached


async def add_many_once(session: AsyncSession, notices: dict[str, dict[str, Any]]) -> dict[str, StoredNotification]:
    """`add_once` for many notifications (task id -> user_id, type, title, body, data), one
    statement; also answers whether each should be pushed, and to which devices. A task id
    missing from the answer is being stored concurrently: store it with `add_once`."""
    if not notices:
        return {}
    rows = await session.execute(
        _ADD_MANY_ONCE,
        {
            "task_ids": list(notices),
            "user_ids": [n["user_id"] for n in notices.values()],
            "types": [n["type"] for n in notices.values()],
            "titles": [n["title"] for n in notices.values()],
            "bodies": [n["body"] for n in notices.values()],
            "datas": [json.dumps(n["data"]) for n in notices.values()],
        },
    )
    return {
        row.task_id: StoredNotification(
            row.id,
            row.already_pushed,
            row.wants_push,
            list(zip(row.tokens, row.platforms, strict=True)),
            frozenset(row.pushed_tokens),
        )
        for row in rows
        # No id: another delivery of the same task inserted it after this statement's snapshot
        # was taken. Left out, so that job stores (finds) it alone with `add_once`.
        if row.id is not None
    }


_REMEMBER_REACHED = text(
    """
    UPDATE notifications
    SET pushed_tokens = ARRAY(SELECT DISTINCT unnest(pushed_tokens || CAST(:tokens AS text[])) ORDER BY 1)
    WHERE id = :notification_id
    """
)


async def remember_reached(session: AsyncSession, notification_id: int, tokens: set[str]) -> None:
    """Add `tokens` to the devices this notification already reached."""
    await session.execute(_REMEMBER_REACHED, {"notification_id": notification_id, "tokens": sorted(tokens)})


async def mark_pushed(session: AsyncSession, notification_id: int) -> None:
    await session.execute(update(Notification).where(Notification.id == notification_id).values(pushed_at=func.now()))


async def wants_push(session: AsyncSession, user_id: int, type: str) -> bool:
    preference = await session.get(NotificationPreference, (user_id, type))
    return preference is None or preference.push


async def wants_email(session: AsyncSession, user_id: int, type: str) -> bool:
    preference = await session.get(NotificationPreference, (user_id, type))
    return preference is None or preference.email


async def devices_of(session: AsyncSession, user_id: int) -> list[Device]:
    return list((await session.scalars(select(Device).where(Device.user_id == user_id))).all())


async def remove_tokens(session: AsyncSession, tokens: set[str]) -> None:
    if tokens:
        await session.execute(delete(Device).where(Device.token.in_(tokens)))


async def register_device(session: AsyncSession, *, user_id: int, token: str, platform: str) -> Device:
    statement = (
        insert(Device)
        .values(user_id=user_id, token=token, platform=platform)
        .on_conflict_do_update(index_elements=[Device.token], set_={"user_id": user_id, "platform": platform})
        .returning(Device)
    )
    return (await session.execute(statement)).scalar_one()


async def list_for_user(
    session: AsyncSession, user_id: int, *, unread_only: bool, limit: int, offset: int
) -> tuple[list[Notification], int]:
    conditions = [Notification.user_id == user_id]
    if unread_only:
        conditions.append(Notification.read_at.is_(None))
    total = await session.scalar(select(func.count()).select_from(Notification).where(*conditions)) or 0
    rows = await session.scalars(
        select(Notification)
        .where(*conditions)
        .order_by(Notification.created_at.desc(), Notification.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(rows.all()), total


async def mark_read(session: AsyncSession, user_id: int, notification_id: int | None = None) -> int:
    statement = update(Notification).where(Notification.user_id == user_id, Notification.read_at.is_(None))
    if notification_id is not None:
        statement = statement.where(Notification.id == notification_id)
    result = await session.execute(statement.values(read_at=func.now()))
    return result.rowcount or 0


async def get(session: AsyncSession, notification_id: int) -> Notification | None:
    return await session.get(Notification, notification_id)


async def set_preference(session: AsyncSession, *, user_id: int, type: str, push: bool, email: bool) -> None:
    await session.execute(
        insert(NotificationPreference)
        .values(user_id=user_id, type=type, push=push, email=email)
        .on_conflict_do_update(
            index_elements=[NotificationPreference.user_id, NotificationPreference.type],
            set_={"push": push, "email": email},
        )
    )


async def preferences_of(session: AsyncSession, user_id: int) -> list[NotificationPreference]:
    rows = await session.scalars(select(NotificationPreference).where(NotificationPreference.user_id == user_id))
    return list(rows.all())

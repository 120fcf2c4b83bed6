"""SQL for notifications, devices and preferences."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, literal_column, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from backend_app.notifications.models import Device, Notification, NotificationPreference
from backend_app.users.models import User

# What a user who has set nothing for a type gets: pushed, and emailed where that type is
# emailed. Every reader of preferences (the push path, the email check, the preferences the
# API shows) applies these, so what the API shows is what happens.
DEFAULT_PUSH = True
DEFAULT_EMAIL = True


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
           coalesce(preference.push, CAST(:default_push AS boolean)) AS wants_push,
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
            "default_push": DEFAULT_PUSH,
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
    return DEFAULT_PUSH if preference is None else preference.push


# Built once (as auth.repository's user lookup): the message path runs it on every send.
_ACTIVE_USER_AND_EMAIL_WISH = (
    select(User, NotificationPreference.email)
    .outerjoin(
        NotificationPreference,
        and_(NotificationPreference.user_id == User.id, NotificationPreference.type == bindparam("type")),
    )
    .where(User.id == bindparam("user_id"), User.deleted_at.is_(None))
)


async def active_user_and_email_wish(session: AsyncSession, user_id: int, type: str) -> tuple[User | None, bool]:
    """The account (None when it does not exist or was deleted, as `users.repository.get_active`)
    and whether it wants emails of `type`, in one statement: a message's send path needs
    both, and each round trip counts there (`python -m bench.http`, route `message`)."""
    row = (await session.execute(_ACTIVE_USER_AND_EMAIL_WISH, {"user_id": user_id, "type": type})).first()
    if row is None:
        return None, False
    user, email = row
    return user, DEFAULT_EMAIL if email is None else email


async def devices_of(session: AsyncSession, user_id: int) -> list[Device]:
    return list((await session.scalars(select(Device).where(Device.user_id == user_id))).all())


async def devices_page(session: AsyncSession, user_id: int, *, limit: int, offset: int) -> tuple[list[Device], int]:
    """`user_id`'s devices, newest first."""
    condition = Device.user_id == user_id
    total = await session.scalar(select(func.count()).select_from(Device).where(condition)) or 0
    rows = await session.scalars(
        select(Device).where(condition).order_by(Device.created_at.desc(), Device.id.desc()).limit(limit).offset(offset)
    )
    return list(rows.all()), total


async def remove_tokens(session: AsyncSession, tokens: set[str]) -> None:
    if tokens:
        await session.execute(delete(Device).where(Device.token.in_(tokens)))


async def register_device(
    session: AsyncSession, *, user_id: int, token: str, platform: str
) -> tuple[Device, bool] | None:
    """Add the device, or update the platform of this user's own registration of `token`, in
    one statement (so two accounts racing for a token cannot both have it). Returns the device
    and whether it was added, or None when `token` is another user's."""
    statement = insert(Device).values(user_id=user_id, token=token, platform=platform)
    statement = statement.on_conflict_do_update(
        index_elements=[Device.token],
        set_={"platform": statement.excluded.platform},
        where=Device.user_id == statement.excluded.user_id,
    ).returning(
        Device,
        # A row this statement inserted has no deleting or locking transaction yet.
        literal_column("xmax = 0").label("added"),
    )
    row = (await session.execute(statement.execution_options(populate_existing=True))).one_or_none()
    return None if row is None else (row[0], bool(row[1]))


async def remove_device(session: AsyncSession, *, user_id: int, device_id: int) -> bool:
    """Remove one of `user_id`'s devices; False if it has no device `device_id`."""
    removed = await session.scalar(
        delete(Device).where(Device.id == device_id, Device.user_id == user_id).returning(Device.id)
    )
    return removed is not None


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


async def delete_read_before(session: AsyncSession, cutoff: datetime) -> int:
    """Delete notifications read before `cutoff`; how many went."""
    result = await session.execute(
        delete(Notification).where(Notification.read_at.is_not(None), Notification.read_at < cutoff)
    )
    return result.rowcount or 0  # type: ignore[attr-defined]

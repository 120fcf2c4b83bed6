"""SQL for direct messages."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, case, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from backend_app.messages.models import Message

# One INSERT ... RETURNING, built once: the unit of work's flush of a new object cost a tenth
# of `POST /api/messages`'s CPU (issue 15's profile), and this returns the same object.
_ADD = insert(Message).returning(Message)


async def add(session: AsyncSession, *, sender_id: int, recipient_id: int, body: str) -> Message:
    return (await session.scalars(_ADD, [{"sender_id": sender_id, "recipient_id": recipient_id, "body": body}])).one()


async def threads(session: AsyncSession, user_id: int, *, limit: int, offset: int) -> tuple[list[Any], int]:
    """One row per person `user_id` has messages with: the latest message and the unread count."""
    other = case((Message.sender_id == user_id, Message.recipient_id), else_=Message.sender_id).label("other_id")
    mine = or_(Message.sender_id == user_id, Message.recipient_id == user_id)
    ranked = (
        select(
            Message.id,
            other,
            func.row_number()
            .over(partition_by=other, order_by=(Message.created_at.desc(), Message.id.desc()))
            .label("rank"),
            func.count()
            .filter(and_(Message.recipient_id == user_id, Message.read_at.is_(None)))
            .over(partition_by=other)
            .label("unread"),
        )
        .where(mine)
        .subquery()
    )
    latest = select(ranked.c.id, ranked.c.other_id, ranked.c.unread).where(ranked.c.rank == 1).subquery()
    total = await session.scalar(select(func.count()).select_from(latest)) or 0
    rows = await session.execute(
        select(Message, latest.c.other_id, latest.c.unread)
        .join(latest, latest.c.id == Message.id)
        .order_by(Message.created_at.desc(), Message.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(rows.all()), total


async def conversation(
    session: AsyncSession, user_id: int, other_id: int, *, limit: int, offset: int
) -> tuple[list[Message], int]:
    pair = or_(
        and_(Message.sender_id == user_id, Message.recipient_id == other_id),
        and_(Message.sender_id == other_id, Message.recipient_id == user_id),
    )
    total = await session.scalar(select(func.count()).select_from(Message).where(pair)) or 0
    rows = await session.scalars(
        select(Message).where(pair).order_by(Message.created_at.desc(), Message.id.desc()).limit(limit).offset(offset)
    )
    return list(rows.all()), total


async def mark_conversation_read(session: AsyncSession, user_id: int, other_id: int) -> int:
    result = await session.execute(
        update(Message)
        .where(Message.recipient_id == user_id, Message.sender_id == other_id, Message.read_at.is_(None))
        .values(read_at=func.now())
    )
    return result.rowcount or 0

"""SQL for follows."""

from __future__ import annotations

from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from backend_app.follows.models import Follow
from backend_app.users.models import User


async def insert_if_new(session: AsyncSession, *, follower_id: int, followed_id: int) -> bool:
    created = await session.scalar(
        insert(Follow)
        .values(follower_id=follower_id, followed_id=followed_id)
        .on_conflict_do_nothing()
        .returning(Follow.follower_id)
    )
    return created is not None


async def remove(session: AsyncSession, *, follower_id: int, followed_id: int) -> None:
    await session.execute(delete(Follow).where(Follow.follower_id == follower_id, Follow.followed_id == followed_id))


async def users_page(
    session: AsyncSession,
    *,
    condition: ColumnElement[bool],
    other_side: InstrumentedAttribute[int],
    limit: int,
    offset: int,
) -> tuple[list[User], int]:
    """The users on `other_side` of the follows matching `condition`, newest follow first."""
    total = await session.scalar(select(func.count()).select_from(Follow).where(condition)) or 0
    users = await session.scalars(
        select(User)
        .join(Follow, other_side == User.id)
        .where(condition)
        .order_by(Follow.created_at.desc(), User.id)
        .limit(limit)
        .offset(offset)
    )
    return list(users.all()), total


async def followers(session: AsyncSession, user_id: int, *, limit: int, offset: int) -> tuple[list[User], int]:
    return await users_page(
        session, condition=Follow.followed_id == user_id, other_side=Follow.follower_id, limit=limit, offset=offset
    )


async def following(session: AsyncSession, user_id: int, *, limit: int, offset: int) -> tuple[list[User], int]:
    return await users_page(
        session, condition=Follow.follower_id == user_id, other_side=Follow.followed_id, limit=limit, offset=offset
    )

"""SQL for accounts."""

from __future__ import annotations

from sqlalchemy import ColumnElement, func, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from backend_app.users.models import User


async def get(session: AsyncSession, user_id: int) -> User | None:
    return await session.get(User, user_id)


async def get_by_email(session: AsyncSession, email: str) -> User | None:
    return await session.scalar(select(User).where(func.lower(User.email) == email.lower()))


def contains_pattern(text: str) -> str:
    """An ILIKE pattern matching `text` anywhere, with its own % and _ taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def search(session: AsyncSession, *, q: str | None, limit: int, offset: int) -> tuple[list[User], int]:
    condition: ColumnElement[bool] = true()
    if q:
        pattern = contains_pattern(q)
        condition = or_(
            User.username.ilike(pattern),
            User.first_name.ilike(pattern),
            User.last_name.ilike(pattern),
            (User.first_name + " " + User.last_name).ilike(pattern),
        )
    total = await session.scalar(select(func.count()).select_from(User).where(condition)) or 0
    users = await session.scalars(select(User).where(condition).order_by(User.id).limit(limit).offset(offset))
    return list(users.all()), total


async def username_taken(session: AsyncSession, username: str, *, except_user_id: int | None = None) -> bool:
    statement = select(User.id).where(func.lower(User.username) == username.lower())
    if except_user_id is not None:
        statement = statement.where(User.id != except_user_id)
    return await session.scalar(statement) is not None

"""SQL for posts, likes and comments."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, delete, func, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from backend_app.follows.models import Follow
from backend_app.posts.models import Comment, Post, PostLike


def _with_counts() -> Select[Any]:
    likes = select(func.count()).where(PostLike.post_id == Post.id).correlate(Post).scalar_subquery()
    comments = select(func.count()).where(Comment.post_id == Post.id).correlate(Post).scalar_subquery()
    return select(Post, likes.label("like_count"), comments.label("comment_count"))


async def like_count(session: AsyncSession, post_id: int) -> int:
    return await session.scalar(select(func.count()).where(PostLike.post_id == post_id)) or 0


async def feed(session: AsyncSession, user_id: int, *, limit: int, offset: int) -> tuple[list[Any], int]:
    """Posts by the people `user_id` follows, and their own, newest first."""
    followed = select(Follow.followed_id).where(Follow.follower_id == user_id)
    condition = or_(Post.author_id == user_id, Post.author_id.in_(followed))
    total = await session.scalar(select(func.count()).select_from(Post).where(condition)) or 0
    rows = await session.execute(
        _with_counts().where(condition).order_by(Post.created_at.desc(), Post.id.desc()).limit(limit).offset(offset)
    )
    return list(rows.all()), total


async def like(session: AsyncSession, *, post_id: int, user_id: int) -> bool:
    """True when this created the like."""
    created = await session.scalar(
        insert(PostLike).values(post_id=post_id, user_id=user_id).on_conflict_do_nothing().returning(PostLike.post_id)
    )
    return created is not None


async def unlike(session: AsyncSession, *, post_id: int, user_id: int) -> bool:
    """True when there was a like to take back."""
    removed = await session.scalar(
        delete(PostLike).where(PostLike.post_id == post_id, PostLike.user_id == user_id).returning(PostLike.post_id)
    )
    return removed is not None


async def comments(session: AsyncSession, post_id: int, *, limit: int, offset: int) -> tuple[list[Comment], int]:
    condition = Comment.post_id == post_id
    total = await session.scalar(select(func.count()).select_from(Comment).where(condition)) or 0
    rows = await session.scalars(
        select(Comment).where(condition).order_by(Comment.created_at, Comment.id).limit(limit).offset(offset)
    )
    return list(rows.all()), total

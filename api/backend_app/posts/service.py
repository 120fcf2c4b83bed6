"""Posting, liking and commenting; the post's author is notified through the outbox."""

from __future__ import annotations

from typing import Any

from backend_app.auth.service import display_name
from backend_app.core.read_replica import AsyncWriteSession
from backend_app.outbox import service as outbox
from backend_app.posts import repository
from backend_app.posts.models import Comment, Post
from backend_app.tasks.models import TaskBackend
from backend_app.users.models import User

PREVIEW_LENGTH = 140


def preview(text: str) -> str:
    return text if len(text) <= PREVIEW_LENGTH else text[: PREVIEW_LENGTH - 1] + "…"


async def _notify(session: AsyncWriteSession, *, task: str, kwargs: dict[str, Any], owner_id: int) -> None:
    await outbox.add(
        session=session,
        backend=TaskBackend.rq,
        queue="notifications",
        task=f"backend_app.core.rq_tasks.{task}",
        kwargs=kwargs,
        owner_id=owner_id,
    )


async def create_post(*, session: AsyncWriteSession, author: User, body: str) -> Post:
    post = Post(author_id=author.id, body=body)
    session.add(post)
    await session.flush()
    return post


async def like(*, session: AsyncWriteSession, post: Post, user: User) -> None:
    """Idempotent: a second like changes nothing and notifies nobody."""
    if await repository.like(session, post_id=post.id, user_id=user.id) and post.author_id != user.id:
        await _notify(
            session,
            task="send_new_like_notification_job",
            kwargs={
                "liker_id": user.id,
                "liker_name": display_name(user),
                "post_owner_id": post.author_id,
                "post_id": post.id,
            },
            owner_id=user.id,
        )


async def comment(*, session: AsyncWriteSession, post: Post, author: User, body: str) -> Comment:
    created = Comment(post_id=post.id, author_id=author.id, body=body)
    session.add(created)
    await session.flush()
    if post.author_id != author.id:
        await _notify(
            session,
            task="send_new_comment_notification_job",
            kwargs={
                "commenter_id": author.id,
                "commenter_name": display_name(author),
                "post_owner_id": post.author_id,
                "post_id": post.id,
                "comment_preview": preview(body),
            },
            owner_id=author.id,
        )
    return created

"""Posting, liking and commenting; the post's author is notified through the outbox."""

from __future__ import annotations

from backend_app.auth.service import display_name
from backend_app.db.sessions import AsyncWriteSession
from backend_app.notifications import tasks as notification_tasks
from backend_app.outbox import service as outbox
from backend_app.posts import repository
from backend_app.posts.models import Comment, Post
from backend_app.users.models import User

PREVIEW_LENGTH = 140


class Forbidden(Exception):
    pass


def preview(text: str) -> str:
    return text if len(text) <= PREVIEW_LENGTH else text[: PREVIEW_LENGTH - 1] + "…"


async def create_post(*, session: AsyncWriteSession, author: User, body: str) -> Post:
    post = Post(author_id=author.id, body=body)
    session.add(post)
    await session.flush()
    return post


async def like(*, session: AsyncWriteSession, post: Post, user: User) -> int:
    """Idempotent: a second like changes nothing and notifies nobody. Returns the post's likes."""
    if await repository.like(session, post_id=post.id, user_id=user.id) and post.author_id != user.id:
        await outbox.add(
            session,
            notification_tasks.send_new_like_notification_job.call(
                liker_id=user.id, liker_name=display_name(user), post_owner_id=post.author_id, post_id=post.id
            ),
            # Once per liker and post: liking again after unliking notifies nobody again.
            idempotency_key=f"like-notification-{post.id}-{user.id}",
            owner_id=user.id,
        )
    return await repository.like_count(session, post.id)


async def unlike(*, session: AsyncWriteSession, post: Post, user: User) -> None:
    """Idempotent: taking back a like that is not there changes nothing. Likes are counted
    from their rows when read, so removing the row is the whole change."""
    await repository.unlike(session, post_id=post.id, user_id=user.id)


async def delete_post(*, session: AsyncWriteSession, post: Post, user: User) -> None:
    """The author's own post; its likes and comments go with it (ON DELETE CASCADE)."""
    if post.author_id != user.id:
        raise Forbidden("Only the author can delete this post.")
    await session.delete(post)


async def comment(*, session: AsyncWriteSession, post: Post, author: User, body: str) -> Comment:
    created = Comment(post_id=post.id, author_id=author.id, body=body)
    session.add(created)
    await session.flush()
    if post.author_id != author.id:
        await outbox.add(
            session,
            notification_tasks.send_new_comment_notification_job.call(
                commenter_id=author.id,
                commenter_name=display_name(author),
                post_owner_id=post.author_id,
                post_id=post.id,
                comment_preview=preview(body),
            ),
            owner_id=author.id,
        )
    return created

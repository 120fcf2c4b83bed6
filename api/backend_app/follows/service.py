"""Following: idempotent follow/unfollow, and the follower notification through the outbox."""

from __future__ import annotations

from backend_app.auth.service import display_name
from backend_app.db.sessions import AsyncWriteSession
from backend_app.follows import repository
from backend_app.notifications import tasks as notification_tasks
from backend_app.outbox import service as outbox
from backend_app.users.models import User


class CannotFollowSelf(Exception):
    pass


async def follow(*, session: AsyncWriteSession, follower: User, followed: User) -> bool:
    """True when this created the follow (and queued the notification); False if it existed."""
    if follower.id == followed.id:
        raise CannotFollowSelf
    if not await repository.insert_if_new(session, follower_id=follower.id, followed_id=followed.id):
        return False
    await outbox.add(
        session,
        notification_tasks.send_new_follower_notification_job.call(
            follower_id=follower.id, follower_name=display_name(follower), followed_user_id=followed.id
        ),
        owner_id=follower.id,
    )
    return True


async def unfollow(*, session: AsyncWriteSession, follower: User, followed_id: int) -> None:
    await repository.remove(session, follower_id=follower.id, followed_id=followed_id)

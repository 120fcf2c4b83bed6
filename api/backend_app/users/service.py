"""Profile changes."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from backend_app.core.read_replica import AsyncWriteSession
from backend_app.users import repository
from backend_app.users.models import User
from backend_app.users.schemas import UserUpdate


class UsernameTaken(Exception):
    pass


async def update_profile(*, session: AsyncWriteSession, user_id: int, changes: UserUpdate) -> User:
    user = await repository.get(session, user_id)
    assert user is not None, "the caller was authenticated a moment ago"
    fields = changes.model_dump(exclude_unset=True, exclude_none=True)
    if "username" in fields and await repository.username_taken(session, fields["username"], except_user_id=user_id):
        raise UsernameTaken
    for name, value in fields.items():
        setattr(user, name, value)
    try:
        await session.flush()
    except IntegrityError:
        raise UsernameTaken from None
    return user

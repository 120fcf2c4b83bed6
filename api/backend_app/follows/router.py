"""Follow and unfollow users; list followers and following."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from backend_app.auth.dependencies import CurrentUser, CurrentUserOnPrimary
from backend_app.core.openapi import RowId
from backend_app.core.pagination import Limit, Offset
from backend_app.db.dependencies import ReadSession, WriteSession
from backend_app.follows import repository, service
from backend_app.users import repository as users
from backend_app.users.models import User
from backend_app.users.schemas import UserPage, UserPublic

router = APIRouter(prefix="/api/users/{user_id}", tags=["follows"])


async def _active_user(session: AsyncSession, user_id: int) -> User:
    """The account in the path; a deleted one is no longer there to follow."""
    user = await users.get_active(session, user_id)
    if user is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="No such user.")
    return user


async def valid_user_id(user_id: RowId, session: ReadSession) -> User:
    return await _active_user(session, user_id)


async def followable_user_id(user_id: RowId, session: WriteSession) -> User:
    """`valid_user_id` for following and unfollowing: read in the route's own primary transaction."""
    return await _active_user(session, user_id)


ValidUser = Annotated[User, Depends(valid_user_id)]
FollowableUser = Annotated[User, Depends(followable_user_id)]


@router.post("/follow", status_code=status.HTTP_204_NO_CONTENT, summary="Follow a user")
async def follow(user: CurrentUserOnPrimary, followed: FollowableUser, session: WriteSession) -> Response:
    """Idempotent: following someone you already follow changes nothing and notifies nobody."""
    try:
        await service.follow(session=session, follower=user, followed=followed)
    except service.CannotFollowSelf:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail="You cannot follow yourself.") from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete("/follow", status_code=status.HTTP_204_NO_CONTENT, summary="Unfollow a user")
async def unfollow(user: CurrentUserOnPrimary, followed: FollowableUser, session: WriteSession) -> Response:
    """Stop following a user. Idempotent: 204 whether or not you followed them; 404 for an unknown or deleted
    account."""
    await service.unfollow(session=session, follower=user, followed_id=followed.id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/followers", response_model=UserPage, summary="List a user's followers")
async def followers(
    _user: CurrentUser, target: ValidUser, session: ReadSession, limit: Limit = 20, offset: Offset = 0
) -> UserPage:
    """The accounts following this user, most recent follow first; any signed-in caller, 404 for an unknown or deleted
    account. Paginated with `limit` and `offset`."""
    found, total = await repository.followers(session, target.id, limit=limit, offset=offset)
    return UserPage(items=[UserPublic.model_validate(u) for u in found], total=total, limit=limit, offset=offset)


@router.get("/following", response_model=UserPage, summary="List whom a user follows")
async def following(
    _user: CurrentUser, target: ValidUser, session: ReadSession, limit: Limit = 20, offset: Offset = 0
) -> UserPage:
    """The accounts this user follows, most recent follow first; any signed-in caller, 404 for an unknown or deleted
    account. Paginated with `limit` and `offset`."""
    found, total = await repository.following(session, target.id, limit=limit, offset=offset)
    return UserPage(items=[UserPublic.model_validate(u) for u in found], total=total, limit=limit, offset=offset)

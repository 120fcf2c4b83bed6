"""Follow and unfollow users; list followers and following."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Response, status

from backend_app.auth.dependencies import CurrentUser
from backend_app.core.errors import get_or_404
from backend_app.core.pagination import Limit, Offset
from backend_app.core.read_replica import ReadSession, WriteSession
from backend_app.follows import repository, service
from backend_app.users.models import User
from backend_app.users.schemas import UserPage, UserPublic

router = APIRouter(prefix="/api/users/{user_id}", tags=["follows"])


async def valid_user_id(user_id: int, session: ReadSession) -> User:
    return await get_or_404(session, User, user_id, detail="No such user.")


ValidUser = Annotated[User, Depends(valid_user_id)]


@router.post("/follow", status_code=status.HTTP_204_NO_CONTENT)
async def follow(followed: ValidUser, user: CurrentUser, session: WriteSession) -> Response:
    """Idempotent: following someone you already follow changes nothing and notifies nobody."""
    try:
        await service.follow(session=session, follower=user, followed=followed)
    except service.CannotFollowSelf:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail="You cannot follow yourself.") from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete("/follow", status_code=status.HTTP_204_NO_CONTENT)
async def unfollow(followed: ValidUser, user: CurrentUser, session: WriteSession) -> Response:
    await service.unfollow(session=session, follower=user, followed_id=followed.id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/followers", response_model=UserPage)
async def followers(
    target: ValidUser, session: ReadSession, _user: CurrentUser, limit: Limit = 20, offset: Offset = 0
) -> UserPage:
    found, total = await repository.followers(session, target.id, limit=limit, offset=offset)
    return UserPage(items=[UserPublic.model_validate(u) for u in found], total=total, limit=limit, offset=offset)


@router.get("/following", response_model=UserPage)
async def following(
    target: ValidUser, session: ReadSession, _user: CurrentUser, limit: Limit = 20, offset: Offset = 0
) -> UserPage:
    found, total = await repository.following(session, target.id, limit=limit, offset=offset)
    return UserPage(items=[UserPublic.model_validate(u) for u in found], total=total, limit=limit, offset=offset)

"""Accounts: lists and lookups from the replica, changes on the primary."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from backend_app.auth.dependencies import CurrentUser
from backend_app.core.pagination import Limit, Offset
from backend_app.core.read_replica import ReadSession, WriteSession
from backend_app.users import repository, service
from backend_app.users.schemas import UserOut, UserPage, UserPublic, UserUpdate

router = APIRouter(prefix="/api/users", tags=["users"])


@router.get("", response_model=UserPage)
async def list_users(
    session: ReadSession,
    _user: CurrentUser,
    q: Annotated[str | None, Query(max_length=100, description="part of a username or name")] = None,
    limit: Limit = 20,
    offset: Offset = 0,
) -> UserPage:
    found, total = await repository.search(session, q=q, limit=limit, offset=offset)
    return UserPage(items=[UserPublic.model_validate(u) for u in found], total=total, limit=limit, offset=offset)


@router.get("/me", response_model=UserOut)
async def me(user: CurrentUser) -> UserOut:
    return UserOut.model_validate(user)


@router.patch("/me", response_model=UserOut)
async def update_me(changes: UserUpdate, user: CurrentUser, session: WriteSession) -> UserOut:
    try:
        updated = await service.update_profile(session=session, user_id=user.id, changes=changes)
    except service.UsernameTaken:
        raise HTTPException(status.HTTP_409_CONFLICT, detail="This username is taken.") from None
    return UserOut.model_validate(updated)


@router.get("/{user_id}", response_model=UserPublic)
async def get_user(user_id: int, session: ReadSession, _user: CurrentUser) -> UserPublic:
    user = await repository.get(session, user_id)
    if user is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="No such user.")
    return UserPublic.model_validate(user)

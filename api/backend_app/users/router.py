"""Accounts: lists and lookups from the replica, changes on the primary."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, HTTPException, Query, Request, Response, status

from backend_app.auth import service as auth_service
from backend_app.auth.dependencies import CurrentUser, CurrentUserOnPrimary, SignedInOnPrimary
from backend_app.auth.schemas import TokenPair
from backend_app.core.errors import ApiError, invalid
from backend_app.core.openapi import RowId, errors, text
from backend_app.core.pagination import Limit, Offset
from backend_app.db.dependencies import ReadSession, WriteSession
from backend_app.users import repository, service
from backend_app.users.schemas import AccountDeletion, PasswordChange, UserOut, UserPage, UserPublic, UserUpdate

router = APIRouter(prefix="/api/users", tags=["users"])

SearchText = text(max_length=100, trimmed=False)


@router.get("", response_model=UserPage)
async def list_users(
    session: ReadSession,
    _user: CurrentUser,
    q: Annotated[SearchText | None, Query(description="part of a username or name")] = None,
    limit: Limit = 20,
    offset: Offset = 0,
) -> UserPage:
    """Search accounts by part of a username or name (never by email); deleted accounts are left out. Any signed-in
    user; ordered by id, paginated with `limit` and `offset`."""
    found, total = await repository.search(session, q=q, limit=limit, offset=offset)
    return UserPage(items=[UserPublic.model_validate(u) for u in found], total=total, limit=limit, offset=offset)


@router.get("/me", response_model=UserOut, summary="Get my account")
async def me(user: CurrentUser) -> UserOut:
    """Your own account, with your email address, whether it is confirmed (`email_verified`) and whether you are an
    administrator."""
    return UserOut.model_validate(user)


@router.patch("/me", response_model=UserOut, responses=errors(409), summary="Update my account")
async def update_me(changes: UserUpdate, user: CurrentUserOnPrimary, session: WriteSession) -> UserOut:
    """Change your username, first or last name: send only what changes (a null or absent field stays as it is). 409 if
    the username is taken (compared case-insensitively)."""
    try:
        updated = await service.update_profile(session=session, user_id=user.id, changes=changes)
    except service.UsernameTaken:
        raise HTTPException(status.HTTP_409_CONFLICT, detail="This username is taken.") from None
    return UserOut.model_validate(updated)


@router.delete("/me", status_code=status.HTTP_204_NO_CONTENT, responses=errors(401, 429), summary="Delete my account")
async def delete_me(
    body: AccountDeletion, user: CurrentUserOnPrimary, session: WriteSession, background: BackgroundTasks
) -> Response:
    """Delete your account; needs the current password (a wrong one counts as a failed
    sign-in). Your profile, posts, likes, comments, follows, devices, notifications, videos and
    sessions are removed, and your email address and username are free again. Messages you
    sent and applications you made stay with the people who received them, under "Deleted
    account" (applications still in progress are withdrawn); an employer's jobs are closed.
    Every session ends (your access tokens answer 401), and a confirmation is emailed to the
    old address."""
    try:
        video_files = await service.delete_account(session=session, user_id=user.id, password=body.password)
    except service.WrongPassword:
        # Its own code: a client must not take it for an ended session and sign out.
        raise ApiError(401, "The password is not right.", code="wrong_password") from None
    # Runs after the response, so only once the deletion has committed.
    background.add_task(service.remove_files, video_files)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/me/password", response_model=TokenPair, responses=errors(401, 429))
async def change_password(
    body: PasswordChange, caller: SignedInOnPrimary, request: Request, session: WriteSession
) -> TokenPair:
    """Needs the current password. Every other session ends (their access and refresh tokens
    stop working), and so does every outstanding reset link; the answer is a new token pair
    for this session (its earlier access and refresh tokens stop working too)."""
    try:
        return await auth_service.change_password(
            session=session,
            token=caller.token,
            current_password=body.current_password,
            new_password=body.new_password,
            user_agent=request.headers.get("user-agent"),
        )
    except auth_service.InvalidCredentials:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="The current password is not right.") from None
    except auth_service.WeakPassword as weak:
        raise invalid(("body", "new_password"), str(weak)) from None


@router.get("/{user_id}", response_model=UserPublic)
async def get_user(user_id: RowId, session: ReadSession, _user: CurrentUser) -> UserPublic:
    """A deleted account is 404, as one that never existed."""
    user = await repository.get(session, user_id)
    if user is None or user.deleted_at is not None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="No such user.")
    return UserPublic.model_validate(user)

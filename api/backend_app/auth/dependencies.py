"""Who is calling: `CurrentUser` for routes that need a signed-in user."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from backend_app.core.read_replica import ReadSession, get_database_router
from backend_app.core.security import InvalidTokenError, decode_access_token
from backend_app.users.models import User

bearer = HTTPBearer(auto_error=False)

UNAUTHENTICATED = HTTPException(
    status_code=status.HTTP_401_UNAUTHORIZED,
    detail="Not authenticated: send 'Authorization: Bearer <access token>'.",
    headers={"WWW-Authenticate": "Bearer"},
)


async def get_current_user_id(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> int:
    """The signed-in user's id from the token alone, for routes that must not hold a database
    connection while they wait on the client (uploads)."""
    if credentials is None:
        raise UNAUTHENTICATED
    try:
        return decode_access_token(credentials.credentials)
    except InvalidTokenError:
        raise UNAUTHENTICATED from None


async def get_current_user(
    session: ReadSession,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> User:
    if credentials is None:
        raise UNAUTHENTICATED
    try:
        user_id = decode_access_token(credentials.credentials)
    except InvalidTokenError:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="The access token is invalid or has expired; sign in again.",
            headers={"WWW-Authenticate": "Bearer"},
        ) from None
    user = await session.get(User, user_id)
    if user is None:
        # A brand-new account may not have reached the replica yet.
        async with get_database_router().primary_read_session() as primary:
            user = await primary.get(User, user_id)
    if user is None:
        raise UNAUTHENTICATED
    return user


async def get_optional_user(
    session: ReadSession,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> User | None:
    """The signed-in user, or None for an anonymous caller (a bad token is still a 401)."""
    if credentials is None:
        return None
    return await get_current_user(session, credentials)


async def get_current_admin(user: Annotated[User, Depends(get_current_user)]) -> User:
    if not user.is_admin:
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail="Administrators only.")
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]
CurrentAdmin = Annotated[User, Depends(get_current_admin)]
OptionalUser = Annotated[User | None, Depends(get_optional_user)]
CurrentUserId = Annotated[int, Depends(get_current_user_id)]

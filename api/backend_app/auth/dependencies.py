"""Who is calling: `CurrentUser` for routes that need a signed-in user, `SignedIn` for those
that also need the access token (its session)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from backend_app.auth import repository
from backend_app.auth.models import AuthSession
from backend_app.auth.service import session_is_open
from backend_app.core.errors import ApiError
from backend_app.core.security import AccessToken, InvalidTokenError, read_access_token
from backend_app.db.dependencies import ReadSession, WriteSession
from backend_app.db.lifecycle import get_database_router
from backend_app.users.models import User

bearer = HTTPBearer(auto_error=False)

UNAUTHENTICATED = HTTPException(
    status_code=status.HTTP_401_UNAUTHORIZED,
    detail="Not authenticated: send 'Authorization: Bearer <access token>'.",
    headers={"WWW-Authenticate": "Bearer"},
)


async def get_access_token(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> AccessToken:
    """The caller's valid access token, checked without the database, for routes that must
    not hold a connection while they wait on the client (uploads); such a route checks that
    the token still opens a session once it opens its database session (`token_is_current`)."""
    if credentials is None:
        raise UNAUTHENTICATED
    try:
        return read_access_token(credentials.credentials)
    except InvalidTokenError:
        raise INVALID_TOKEN from None


# The three 401s a frontend tells apart by `code`: no token (`not_authenticated`: sign in), a
# token that expired or is malformed (`invalid_token`: refresh, then retry), and a session that
# ended (`session_ended`: signed out, password changed or reset, account deleted: sign in again).
SESSION_ENDED = ApiError(
    status.HTTP_401_UNAUTHORIZED,
    "This session has ended (signed out, or the password was changed or reset); sign in again.",
    code="session_ended",
    headers={"WWW-Authenticate": "Bearer"},
)
INVALID_TOKEN = ApiError(
    status.HTTP_401_UNAUTHORIZED,
    "The access token is invalid or has expired; sign in again.",
    code="invalid_token",
    headers={"WWW-Authenticate": "Bearer"},
)


@dataclass(frozen=True)
class SignedInCaller:
    user: User
    token: AccessToken


def _bearer_token(credentials: HTTPAuthorizationCredentials | None) -> AccessToken:
    if credentials is None:
        raise UNAUTHENTICATED
    try:
        return read_access_token(credentials.credentials)
    except InvalidTokenError:
        raise INVALID_TOKEN from None


def _caller(user: User | None, auth_session: AuthSession | None, token: AccessToken) -> SignedInCaller:
    if user is None:
        raise UNAUTHENTICATED
    if not session_is_open(user, auth_session, token):
        raise SESSION_ENDED
    return SignedInCaller(user=user, token=token)


async def get_signed_in(
    session: ReadSession,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> SignedInCaller:
    """The caller's account and access token, once the token still opens a session: the account
    exists, its password has not changed since, and the token's sign-in session is open."""
    token = _bearer_token(credentials)
    # One statement: the account with the token's session.
    user, auth_session = await repository.user_with_session(session, token.user_id, token.session_id)
    if user is None or user.token_version < token.version or (token.session_id is not None and auth_session is None):
        # A brand-new account, session or password change may not have reached the replica yet.
        async with get_database_router().primary_read_session() as primary:
            user, auth_session = await repository.user_with_session(primary, token.user_id, token.session_id)
    return _caller(user, auth_session, token)


async def get_signed_in_on_primary(
    session: WriteSession,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> SignedInCaller:
    """`get_signed_in` for routes that write: the lookup is the first statement of the route's
    own primary transaction (FastAPI hands the route the same session), so the request holds
    one connection instead of a replica's and the primary's, and never needs a second look."""
    token = _bearer_token(credentials)
    user, auth_session = await repository.user_with_session(session, token.user_id, token.session_id)
    return _caller(user, auth_session, token)


async def get_current_user(caller: Annotated[SignedInCaller, Depends(get_signed_in)]) -> User:
    return caller.user


async def get_current_user_on_primary(caller: Annotated[SignedInCaller, Depends(get_signed_in_on_primary)]) -> User:
    return caller.user


async def get_optional_user(
    session: ReadSession,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> User | None:
    """The signed-in user, or None for an anonymous caller (a bad token is still a 401)."""
    if credentials is None:
        return None
    return (await get_signed_in(session, credentials)).user


async def get_optional_user_on_primary(
    session: WriteSession,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> User | None:
    """`get_optional_user` for routes that write (see `get_signed_in_on_primary`)."""
    if credentials is None:
        return None
    return (await get_signed_in_on_primary(session, credentials)).user


async def get_current_admin(user: Annotated[User, Depends(get_current_user)]) -> User:
    if not user.is_admin:
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail="Administrators only.")
    return user


async def get_current_admin_on_primary(user: Annotated[User, Depends(get_current_user_on_primary)]) -> User:
    return await get_current_admin(user)


EMAIL_NOT_VERIFIED = (
    "Confirm your email address first: follow the link we sent (POST /api/auth/verify-email/resend sends a new one)."
)


async def get_verified_user_on_primary(user: Annotated[User, Depends(get_current_user_on_primary)]) -> User:
    """The signed-in user, once the account's email address is confirmed: what posting a job,
    applying and messaging need (an unconfirmed address could be anyone's). All three write."""
    if user.email_verified_at is None:
        raise ApiError(status.HTTP_403_FORBIDDEN, EMAIL_NOT_VERIFIED, code="email_not_verified")
    return user


# Routes that read take these (the lookup on the replica session)...
SignedIn = Annotated[SignedInCaller, Depends(get_signed_in)]
CurrentUser = Annotated[User, Depends(get_current_user)]
# ...routes that write (a WriteSession) take these: the lookup on their primary transaction.
SignedInOnPrimary = Annotated[SignedInCaller, Depends(get_signed_in_on_primary)]
CurrentUserOnPrimary = Annotated[User, Depends(get_current_user_on_primary)]
VerifiedUser = Annotated[User, Depends(get_verified_user_on_primary)]
CurrentAdmin = Annotated[User, Depends(get_current_admin)]
CurrentAdminOnPrimary = Annotated[User, Depends(get_current_admin_on_primary)]
OptionalUser = Annotated[User | None, Depends(get_optional_user)]
OptionalUserOnPrimary = Annotated[User | None, Depends(get_optional_user_on_primary)]
SignedInToken = Annotated[AccessToken, Depends(get_access_token)]

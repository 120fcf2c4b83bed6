"""Registration, sign-in sessions (refresh, sign-out, the session list), password reset and
email verification."""

from __future__ import annotations

import contextlib

from fastapi import APIRouter, HTTPException, Request, Response, status

from backend_app.auth import service
from backend_app.auth.dependencies import CurrentUserOnPrimary, SignedIn, SignedInOnPrimary
from backend_app.auth.schemas import (
    Credentials,
    EmailVerification,
    PasswordResetConfirm,
    PasswordResetRequest,
    RefreshRequest,
    SessionPage,
    SignOut,
    TokenPair,
)
from backend_app.core import rate_limit
from backend_app.core.config import get_settings
from backend_app.core.errors import ApiError, invalid
from backend_app.core.openapi import RowId, errors
from backend_app.core.pagination import Limit, Offset
from backend_app.db.dependencies import ReadSession, WriteSession, get_db_write
from backend_app.users.schemas import Registration, UserOut

router = APIRouter(prefix="/api/auth", tags=["auth"])

# The WriteSession dependency's own session, opened by the route: a refresh that finds a
# reused token must commit the session's revocation and still answer 401.
write_session_for = contextlib.asynccontextmanager(get_db_write)

REFRESH_REFUSED = "This refresh token is invalid, used or its session has ended; sign in again."


def _unauthorized(detail: str, code: str | None = None) -> HTTPException:
    return ApiError(status.HTTP_401_UNAUTHORIZED, detail, code=code, headers={"WWW-Authenticate": "Bearer"})


@router.post("/register", response_model=UserOut, status_code=status.HTTP_201_CREATED, responses=errors(409, 429))
async def register(registration: Registration, request: Request, session: WriteSession) -> UserOut:
    """Create an account. A link to confirm its email address is emailed to it (posting jobs,
    applying and messaging wait for that); sign in with POST /api/auth/login."""
    await rate_limit.hit(
        get_settings().rate_limit_register_per_address,
        "register",
        rate_limit.client_address(request),
        detail="Too many sign-ups from this address; try again later.",
    )
    try:
        user = await service.register(session=session, registration=registration)
    except service.WeakPassword as weak:
        raise invalid(("body", "password"), str(weak)) from None
    except service.Conflict as conflict:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(conflict)) from None
    return UserOut.model_validate(user)


@router.post("/login", response_model=TokenPair, responses=errors(401, 429))
async def login(credentials: Credentials, request: Request, session: WriteSession) -> TokenPair:
    """Sign in: opens a session (listed by GET /api/auth/sessions under the client's
    User-Agent) and answers its access token (ACCESS_TOKEN_EXPIRE_MINUTES) and refresh token
    (REFRESH_TOKEN_EXPIRE_DAYS, renewed by every refresh)."""
    try:
        user = await service.authenticate(
            session=session,
            email=credentials.email,
            password=credentials.password,
            client_address=rate_limit.client_address(request),
        )
    except service.InvalidCredentials:
        raise _unauthorized("Incorrect email or password.") from None
    return await service.open_session(session=session, user=user, user_agent=request.headers.get("user-agent"))


@router.post("/refresh", response_model=TokenPair, responses=errors(401, 503))
async def refresh(body: RefreshRequest, request: Request) -> TokenPair:
    """Trade a refresh token for a new pair on the same session. Each refresh token works once:
    presenting a used one again means it was copied, so the whole session is signed out (its
    newest refresh token and its access tokens stop working) and the answer is 401."""
    async with write_session_for(request) as session:
        try:
            return await service.refresh(session=session, refresh_token=body.refresh_token)
        except service.InvalidRefreshToken:
            raise _unauthorized(REFRESH_REFUSED, "session_ended") from None
        except service.RefreshTokenReused:
            pass  # leave the block normally, so the session's revocation commits
    raise _unauthorized(
        "This refresh token was already used, so its session has been signed out; sign in again.", "session_ended"
    )


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(caller: SignedInOnPrimary, session: WriteSession, body: SignOut | None = None) -> Response:
    """Sign out this session (its access and refresh tokens stop working), or, with
    `{"all_sessions": true}`, every session of the account. The body is optional."""
    await service.sign_out(session=session, token=caller.token, all_sessions=body.all_sessions if body else False)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/sessions", response_model=SessionPage)
async def list_sessions(caller: SignedIn, session: ReadSession, limit: Limit = 20, offset: Offset = 0) -> SessionPage:
    """The account's open sessions (signed-in devices and browsers), the last used first; the
    one asking is `current`."""
    items, total = await service.list_sessions(session=session, token=caller.token, limit=limit, offset=offset)
    return SessionPage(items=items, total=total, limit=limit, offset=offset)


@router.delete("/sessions/{session_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(404))
async def revoke_session(session_id: RowId, user: CurrentUserOnPrimary, session: WriteSession) -> Response:
    """Sign out one of your sessions (a lost phone); its tokens stop working. Another
    account's session is a 404."""
    try:
        await service.revoke_session(session=session, user_id=user.id, session_id=session_id)
    except service.NoSuchSession:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="No such session.") from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/verify-email", response_model=UserOut, responses=errors(400))
async def verify_email(body: EmailVerification, session: WriteSession) -> UserOut:
    """Confirm an account's email address with the token from the link we emailed. A link
    works once and expires after EMAIL_VERIFICATION_TOKEN_MINUTES; no sign-in needed."""
    try:
        user = await service.verify_email(session=session, token=body.token)
    except service.InvalidVerificationToken:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            detail="This verification link is invalid, expired or already used; sign in and ask for a new one.",
        ) from None
    return UserOut.model_validate(user)


@router.post("/verify-email/resend", status_code=status.HTTP_202_ACCEPTED, responses=errors(409, 429))
async def resend_verification_email(user: CurrentUserOnPrimary, session: WriteSession) -> dict[str, str]:
    """Email a new verification link to the signed-in account (links sent before stay valid
    until they expire or one is used). At most 3 an hour (429); 409 once the address is
    confirmed."""
    try:
        await service.resend_verification(session=session, user_id=user.id)
    except service.AlreadyVerified:
        raise HTTPException(status.HTTP_409_CONFLICT, detail="This email address is already confirmed.") from None
    return {"detail": "A new verification link is on its way."}


@router.post("/password-reset", status_code=status.HTTP_202_ACCEPTED, responses=errors(429))
async def request_password_reset(body: PasswordResetRequest, request: Request, session: WriteSession) -> dict[str, str]:
    """Email a single-use password reset link (valid PASSWORD_RESET_TOKEN_MINUTES) if an account has this address; no
    sign-in needed. The answer is 202 either way, so it reveals nothing about accounts; 429 past the limit per
    client address."""
    await service.request_password_reset(
        session=session, email=body.email, client_address=rate_limit.client_address(request)
    )
    return {"detail": "If an account exists for this email, a reset link is on its way."}


@router.post("/password-reset/confirm", status_code=status.HTTP_204_NO_CONTENT, responses=errors(400))
async def confirm_password_reset(body: PasswordResetConfirm, session: WriteSession) -> Response:
    """Set a new password with the token from the reset email; every session of the account
    ends (sign in again)."""
    try:
        await service.reset_password(session=session, token=body.token, new_password=body.new_password)
    except service.InvalidResetToken:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, detail="This reset link is invalid, expired or already used."
        ) from None
    except service.WeakPassword as weak:
        raise invalid(("body", "new_password"), str(weak)) from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)

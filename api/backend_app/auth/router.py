"""Registration, sign-in and password reset."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response, status

from backend_app.auth import service
from backend_app.auth.schemas import AccessToken, Credentials, PasswordResetConfirm, PasswordResetRequest
from backend_app.core.config import get_settings
from backend_app.core.read_replica import WriteSession
from backend_app.core.security import create_access_token
from backend_app.users.schemas import Registration, UserOut

router = APIRouter(prefix="/api/auth", tags=["auth"])


@router.post("/register", response_model=UserOut, status_code=status.HTTP_201_CREATED)
async def register(registration: Registration, session: WriteSession) -> UserOut:
    try:
        user = await service.register(session=session, registration=registration)
    except service.WeakPassword as weak:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(weak)) from None
    except service.Conflict as conflict:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(conflict)) from None
    return UserOut.model_validate(user)


@router.post("/login", response_model=AccessToken)
async def login(credentials: Credentials, request: Request, session: WriteSession) -> AccessToken:
    client_address = request.client.host if request.client else "unknown"
    try:
        user = await service.authenticate(
            session=session, email=credentials.email, password=credentials.password, client_address=client_address
        )
    except service.TooManyAttempts as throttled:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail="Too many failed sign-ins from this address; try again later.",
            headers={"Retry-After": str(throttled.retry_after)},
        ) from None
    except service.InvalidCredentials:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="Incorrect email or password.") from None
    minutes = get_settings().access_token_expire_minutes
    return AccessToken(access_token=create_access_token(user.id), expires_in=minutes * 60)


@router.post("/password-reset", status_code=status.HTTP_202_ACCEPTED)
async def request_password_reset(body: PasswordResetRequest, session: WriteSession) -> dict[str, str]:
    await service.request_password_reset(session=session, email=body.email)
    return {"detail": "If an account exists for this email, a reset link is on its way."}


@router.post("/password-reset/confirm", status_code=status.HTTP_204_NO_CONTENT)
async def confirm_password_reset(body: PasswordResetConfirm, session: WriteSession) -> Response:
    try:
        await service.reset_password(session=session, token=body.token, new_password=body.new_password)
    except service.InvalidResetToken:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, detail="This reset link is invalid, expired or already used."
        ) from None
    except service.WeakPassword as weak:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(weak)) from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)

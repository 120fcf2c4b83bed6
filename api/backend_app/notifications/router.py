"""In-app notifications, push device registration, notification preferences."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from backend_app.auth.dependencies import CurrentUser
from backend_app.core.pagination import Limit, Offset
from backend_app.core.read_replica import ReadSession, WriteSession
from backend_app.notifications import repository
from backend_app.notifications.schemas import (
    DeviceIn,
    DeviceOut,
    NotificationOut,
    NotificationPage,
    PreferenceIn,
    PreferenceOut,
)

router = APIRouter(prefix="/api", tags=["notifications"])


@router.get("/notifications", response_model=NotificationPage)
async def list_notifications(
    user: CurrentUser,
    session: ReadSession,
    unread: bool = False,
    limit: Limit = 20,
    offset: Offset = 0,
) -> NotificationPage:
    found, total = await repository.list_for_user(session, user.id, unread_only=unread, limit=limit, offset=offset)
    return NotificationPage(
        items=[NotificationOut.model_validate(n) for n in found], total=total, limit=limit, offset=offset
    )


@router.post("/notifications/read-all")
async def read_all(user: CurrentUser, session: WriteSession) -> dict[str, int]:
    return {"marked_read": await repository.mark_read(session, user.id)}


@router.post("/notifications/{notification_id}/read", response_model=NotificationOut)
async def read_one(notification_id: int, user: CurrentUser, session: WriteSession) -> NotificationOut:
    notification = await repository.get(session, notification_id)
    if notification is None or notification.user_id != user.id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="No such notification.")
    await repository.mark_read(session, user.id, notification_id)
    await session.refresh(notification)
    return NotificationOut.model_validate(notification)


@router.post("/devices", response_model=DeviceOut, status_code=status.HTTP_201_CREATED)
async def register_device(device: DeviceIn, user: CurrentUser, session: WriteSession) -> DeviceOut:
    """Registering a token again (or from another account) moves it to this account."""
    registered = await repository.register_device(
        session, user_id=user.id, token=device.token, platform=device.platform
    )
    return DeviceOut.model_validate(registered)


@router.get("/notifications/preferences", response_model=list[PreferenceOut])
async def get_preferences(user: CurrentUser, session: ReadSession) -> list[PreferenceOut]:
    return [PreferenceOut.model_validate(p) for p in await repository.preferences_of(session, user.id)]


@router.put("/notifications/preferences", response_model=PreferenceOut)
async def set_preference(preference: PreferenceIn, user: CurrentUser, session: WriteSession) -> PreferenceOut:
    await repository.set_preference(
        session, user_id=user.id, type=preference.type, push=preference.push, email=preference.email
    )
    return PreferenceOut(type=preference.type, push=preference.push, email=preference.email)

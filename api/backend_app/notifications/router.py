"""In-app notifications, push device registration, notification preferences."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response, status

from backend_app.auth.dependencies import CurrentUser, CurrentUserOnPrimary
from backend_app.core.openapi import RowId, errors
from backend_app.core.pagination import Limit, Offset
from backend_app.db.dependencies import ReadSession, WriteSession
from backend_app.notifications import repository, service
from backend_app.notifications.schemas import (
    DeviceIn,
    DeviceOut,
    DevicePage,
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
    """Your notifications, newest first; `unread=true` lists only the unread ones. Paginated with `limit` and
    `offset`."""
    found, total = await repository.list_for_user(session, user.id, unread_only=unread, limit=limit, offset=offset)
    return NotificationPage(
        items=[NotificationOut.model_validate(n) for n in found], total=total, limit=limit, offset=offset
    )


@router.post("/notifications/read-all", summary="Mark all notifications read")
async def read_all(user: CurrentUserOnPrimary, session: WriteSession) -> dict[str, int]:
    """Mark every unread notification of yours read; answers how many it marked (`marked_read`)."""
    return {"marked_read": await service.mark_all_read(session=session, user_id=user.id)}


@router.post(
    "/notifications/{notification_id}/read", response_model=NotificationOut, summary="Mark a notification read"
)
async def read_one(notification_id: RowId, user: CurrentUserOnPrimary, session: WriteSession) -> NotificationOut:
    """Mark one of your notifications read and answer it (marking it again changes nothing). Another user's
    notification is a 404, as an unknown one."""
    try:
        notification = await service.mark_read(session=session, user_id=user.id, notification_id=notification_id)
    except service.NotificationNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="No such notification.") from None
    return NotificationOut.model_validate(notification)


@router.post(
    "/devices",
    response_model=DeviceOut,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": DeviceOut, "description": "Already registered to this account (its platform is updated)."},
        **errors(409),
    },
)
async def register_device(
    device: DeviceIn, user: CurrentUserOnPrimary, session: WriteSession, response: Response
) -> DeviceOut:
    """A device token belongs to one account at a time: 201 when added, 200 when this account
    had it already; 409 while another account has it, until that account removes it
    (`DELETE /api/devices/{device_id}` when signing out on the device)."""
    try:
        registered, added = await service.register_device(
            session=session, user_id=user.id, token=device.token, platform=device.platform
        )
    except service.DeviceOfAnotherAccount:
        raise HTTPException(
            status.HTTP_409_CONFLICT, detail="This device is registered to another account; sign out there first."
        ) from None
    if not added:
        response.status_code = status.HTTP_200_OK
    return DeviceOut.model_validate(registered)


@router.get("/devices", response_model=DevicePage)
async def list_devices(user: CurrentUser, session: ReadSession, limit: Limit = 20, offset: Offset = 0) -> DevicePage:
    """Your push devices, newest first: id, platform and when it was registered; never
    another account's. The token is not shown (the device knows it; `POST /api/devices`
    answers its id, which `DELETE /api/devices/{device_id}` takes)."""
    found, total = await repository.devices_page(session, user.id, limit=limit, offset=offset)
    return DevicePage(items=[DeviceOut.model_validate(d) for d in found], total=total, limit=limit, offset=offset)


@router.delete("/devices/{device_id}", status_code=status.HTTP_204_NO_CONTENT)
async def remove_device(device_id: RowId, user: CurrentUserOnPrimary, session: WriteSession) -> Response:
    """Stop pushing to one of your devices (signing out on it); another account may then register it."""
    try:
        await service.remove_device(session=session, user_id=user.id, device_id=device_id)
    except service.DeviceNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="No such device.") from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/notifications/preferences", response_model=list[PreferenceOut])
async def get_preferences(user: CurrentUser, session: ReadSession) -> list[PreferenceOut]:
    """One entry per notification type (follow, like, comment, message, system): what you set
    with `PUT`, or, where you set nothing, the defaults in force (`default: true`): pushed,
    and emailed where the type is emailed."""
    in_force = await service.preferences_in_force(session=session, user_id=user.id)
    return [PreferenceOut.model_validate(p) for p in in_force]


@router.put("/notifications/preferences", response_model=PreferenceOut)
async def set_preference(preference: PreferenceIn, user: CurrentUserOnPrimary, session: WriteSession) -> PreferenceOut:
    """Set whether notifications of one type are pushed to your devices and emailed (`push` and `email` default to true
    when left out); answers the preference now in force. Only `message` notifications are emailed."""
    await service.set_preference(
        session=session, user_id=user.id, type=preference.type, push=preference.push, email=preference.email
    )
    return PreferenceOut(type=preference.type, push=preference.push, email=preference.email)

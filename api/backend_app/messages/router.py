"""Direct messages: send, list threads, read a conversation."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from backend_app.auth.dependencies import CurrentUser, CurrentUserOnPrimary, VerifiedUser
from backend_app.core.openapi import RowId, errors
from backend_app.core.pagination import Limit, Offset
from backend_app.db.dependencies import ReadSession, WriteSession
from backend_app.messages import repository, service
from backend_app.messages.schemas import MessageCreate, MessageOut, MessagePage, Thread, ThreadPage

router = APIRouter(prefix="/api/messages", tags=["messages"])


@router.post(
    "",
    response_model=MessageOut,
    status_code=status.HTTP_201_CREATED,
    responses=errors(403, 404),
    summary="Send a message",
)
async def send(message: MessageCreate, user: VerifiedUser, session: WriteSession) -> MessageOut:
    """Send a direct message (needs a confirmed email address; 403 without one, and for a message to yourself); 404 for
    an unknown or deleted recipient. The recipient is notified, and emailed if their preferences allow it."""
    try:
        sent = await service.send(session=session, sender=user, recipient_id=message.recipient_id, body=message.body)
    except service.MessageToSelf:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="You cannot message yourself.") from None
    except service.UnknownRecipient:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="No such recipient.") from None
    return MessageOut.model_validate(sent)


@router.get("", response_model=ThreadPage, summary="List my conversations")
async def threads(user: CurrentUser, session: ReadSession, limit: Limit = 20, offset: Offset = 0) -> ThreadPage:
    """Your conversations, the most recent first: the other person, the latest message either way and how many of their
    messages you have not read. Paginated with `limit` and `offset`."""
    rows, total = await repository.threads(session, user.id, limit=limit, offset=offset)
    items = [
        Thread(other_user_id=other, latest=MessageOut.model_validate(m), unread=unread) for m, other, unread in rows
    ]
    return ThreadPage(items=items, total=total, limit=limit, offset=offset)


@router.get("/{other_user_id}", response_model=MessagePage, summary="Read a conversation")
async def conversation(
    other_user_id: RowId, user: CurrentUserOnPrimary, session: WriteSession, limit: Limit = 20, offset: Offset = 0
) -> MessagePage:
    """Newest first; opening it marks the other person's messages read."""
    found, total = await service.open_conversation(
        session=session, user=user, other_user_id=other_user_id, limit=limit, offset=offset
    )
    return MessagePage(items=[MessageOut.model_validate(m) for m in found], total=total, limit=limit, offset=offset)

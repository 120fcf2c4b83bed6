"""Direct messages: send, list threads, read a conversation."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from backend_app.auth.dependencies import CurrentUser
from backend_app.core.pagination import Limit, Offset
from backend_app.core.read_replica import ReadSession, WriteSession
from backend_app.messages import repository, service
from backend_app.messages.schemas import MessageCreate, MessageOut, MessagePage, Thread, ThreadPage

router = APIRouter(prefix="/api/messages", tags=["messages"])


@router.post("", response_model=MessageOut, status_code=status.HTTP_201_CREATED)
async def send(message: MessageCreate, user: CurrentUser, session: WriteSession) -> MessageOut:
    try:
        sent = await service.send(session=session, sender=user, recipient_id=message.recipient_id, body=message.body)
    except service.InvalidRecipient as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(error)) from None
    return MessageOut.model_validate(sent)


@router.get("", response_model=ThreadPage)
async def threads(user: CurrentUser, session: ReadSession, limit: Limit = 20, offset: Offset = 0) -> ThreadPage:
    rows, total = await repository.threads(session, user.id, limit=limit, offset=offset)
    items = [
        Thread(other_user_id=other, latest=MessageOut.model_validate(m), unread=unread) for m, other, unread in rows
    ]
    return ThreadPage(items=items, total=total, limit=limit, offset=offset)


@router.get("/{other_user_id}", response_model=MessagePage)
async def conversation(
    other_user_id: int, user: CurrentUser, session: WriteSession, limit: Limit = 20, offset: Offset = 0
) -> MessagePage:
    """Newest first; opening it marks the other person's messages read."""
    await repository.mark_conversation_read(session, user.id, other_user_id)
    found, total = await repository.conversation(session, user.id, other_user_id, limit=limit, offset=offset)
    return MessagePage(items=[MessageOut.model_validate(m) for m in found], total=total, limit=limit, offset=offset)

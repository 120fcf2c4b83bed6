"""Sending a message (with its push notification and, if wanted, its email); opening a conversation."""

from __future__ import annotations

from backend_app.auth.service import display_name
from backend_app.db.sessions import AsyncWriteSession
from backend_app.emails import tasks as email_tasks
from backend_app.messages import repository
from backend_app.messages.models import Message
from backend_app.notifications import repository as notifications
from backend_app.notifications import tasks as notification_tasks
from backend_app.outbox import service as outbox
from backend_app.posts.service import preview
from backend_app.users.models import User


class MessageToSelf(Exception):
    pass


class UnknownRecipient(Exception):
    pass


async def send(*, session: AsyncWriteSession, sender: User, recipient_id: int, body: str) -> Message:
    if recipient_id == sender.id:
        raise MessageToSelf
    recipient, emailed = await notifications.active_user_and_email_wish(session, recipient_id, "message")
    if recipient is None:
        raise UnknownRecipient
    message = await repository.add(session, sender_id=sender.id, recipient_id=recipient.id, body=body)
    # The push and, if wanted, the email: one statement for both.
    tasks = [
        outbox.Entry(
            notification_tasks.send_new_message_notification_job.call(
                sender_id=sender.id,
                sender_name=display_name(sender),
                receiver_id=recipient.id,
                message_preview=preview(body),
            ),
            owner_id=sender.id,
        )
    ]
    if emailed:
        tasks.append(
            outbox.Entry(
                email_tasks.send_message_notification_email.call(
                    recipient_email=recipient.email,
                    recipient_name=display_name(recipient),
                    sender_name=display_name(sender),
                    message_preview=preview(body),
                ),
                idempotency_key=f"message-email-{message.id}",
                owner_id=recipient.id,
            )
        )
    await outbox.add_all(session, tasks)
    return message


async def open_conversation(
    *, session: AsyncWriteSession, user: User, other_user_id: int, limit: int, offset: int
) -> tuple[list[Message], int]:
    """The conversation with `other_user_id`, newest first, with their messages to `user` marked read.

    The one GET that writes (`GET /api/messages/{other_user_id}`): clients rely on opening a
    conversation marking it read, so the route takes a write session and comes here.
    """
    await repository.mark_conversation_read(session, user.id, other_user_id)
    return await repository.conversation(session, user.id, other_user_id, limit=limit, offset=offset)

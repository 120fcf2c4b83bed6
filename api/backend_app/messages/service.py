"""Sending a message: the push notification (RQ) and, if wanted, the email (Celery)."""

from __future__ import annotations

from backend_app.auth.service import display_name
from backend_app.core.read_replica import AsyncWriteSession
from backend_app.messages.models import Message
from backend_app.notifications import repository as notifications
from backend_app.outbox import service as outbox
from backend_app.posts.service import preview
from backend_app.tasks.models import TaskBackend
from backend_app.users.models import User


class InvalidRecipient(Exception):
    pass


async def send(*, session: AsyncWriteSession, sender: User, recipient_id: int, body: str) -> Message:
    if recipient_id == sender.id:
        raise InvalidRecipient("You cannot message yourself.")
    recipient = await session.get(User, recipient_id)
    if recipient is None:
        raise InvalidRecipient("No such recipient.")
    message = Message(sender_id=sender.id, recipient_id=recipient.id, body=body)
    session.add(message)
    await session.flush()
    await outbox.add(
        session=session,
        backend=TaskBackend.rq,
        queue="notifications",
        task="backend_app.core.rq_tasks.send_new_message_notification_job",
        kwargs={
            "sender_id": sender.id,
            "sender_name": display_name(sender),
            "receiver_id": recipient.id,
            "message_preview": preview(body),
        },
        owner_id=sender.id,
    )
    if await notifications.wants_email(session, recipient.id, "message"):
        await outbox.add(
            session=session,
            backend=TaskBackend.celery,
            queue="emails",
            task="backend_app.core.celery_tasks.send_message_notification_email",
            kwargs={
                "recipient_email": recipient.email,
                "recipient_name": display_name(recipient),
                "sender_name": display_name(sender),
                "message_preview": preview(body),
            },
            idempotency_key=f"message-email-{message.id}",
            owner_id=recipient.id,
        )
    return message

"""Rendering and sending email, at most once per task.

Runs in the Celery worker. SMTP is blocking (smtplib) and that is fine there; the delivery
bookkeeping goes through the async database layer with `run_async`.

A task may be delivered twice (see BACKGROUND_JOBS_SETUP.md). Before talking to the SMTP
server the task claims its row in `email_deliveries`; a second delivery of a task whose
email is `sent` sends nothing. If a worker died while the SMTP server was taking the
message body, the outcome is unknown: we do not send again (never twice), and the task
fails saying so. That window is kept as short as SMTP allows: the row notes the moment the
body starts towards the server (after its DATA go-ahead), and an attempt that died before
it (connecting, greeting, TLS, sender, recipients) is simply sent again by the next one.
"""

from __future__ import annotations

import contextlib
import logging
import smtplib
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formataddr
from functools import lru_cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert

from backend_app.core.config import Settings, get_settings
from backend_app.core.read_replica import get_database_router, is_connection_error
from backend_app.core.worker_runtime import run_async, run_async_when_database_answers
from backend_app.emails.models import DeliveryStatus, EmailDelivery
from backend_app.tasks.errors import PermanentTaskError, TransientTaskError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


@lru_cache
def _templates() -> Environment:
    return Environment(
        loader=PackageLoader("backend_app.emails", "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )


def single_line(value: str) -> str:
    """Header values never carry line breaks (header injection)."""
    return " ".join(str(value).split())


def render(template: str, context: dict[str, Any], settings: Settings | None = None) -> RenderedEmail:
    settings = settings or get_settings()
    values = {"base_url": settings.base_url.rstrip("/"), "from_name": settings.smtp_from_name, **context}
    environment = _templates()
    subject = environment.get_template(f"{template}.subject").render(values)
    return RenderedEmail(
        subject=single_line(subject),
        text=environment.get_template(f"{template}.txt").render(values),
        html=environment.get_template(f"{template}.html").render(values),
    )


def build_message(
    *, message_id: str, to_email: str, to_name: str, email: RenderedEmail, settings: Settings
) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = email.subject
    message["From"] = formataddr((single_line(settings.smtp_from_name), settings.smtp_from_email))
    message["To"] = formataddr((single_line(to_name), to_email))
    message["Message-ID"] = message_id
    message.set_content(email.text)
    message.add_alternative(email.html, subtype="html")
    return message


class MaybeSent(Exception):
    """The connection broke while the server was taking the message: it may have been sent."""


def _refusal(code: int, text: str, what: str) -> Exception:
    if code >= 500:
        return PermanentTaskError(f"{what} refused: {code} {text}")
    return TransientTaskError(f"{what} deferred: {code} {text}")


def _decode(reply: bytes | str) -> str:
    return reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)


class _HandOverSMTP(smtplib.SMTP):
    """smtplib's client, calling `before_body` once the server said go ahead with the body
    (DATA's 354), right before the body is sent: the last moment a failure is known to leave
    the message unsent."""

    before_body: Callable[[], None] = staticmethod(lambda: None)
    body_started = False

    def data(self, msg: bytes | str) -> tuple[int, bytes]:
        # smtplib.SMTP.data, with the hook between the go-ahead and the body.
        self.putcmd("data")
        code, reply = self.getreply()
        if code != 354:
            raise smtplib.SMTPDataError(code, reply)
        self.before_body()
        self.body_started = True
        if isinstance(msg, str):
            msg = smtplib._fix_eols(msg).encode("ascii")
        quoted = smtplib._quote_periods(msg)
        if quoted[-2:] != smtplib.bCRLF:
            quoted += smtplib.bCRLF
        self.send(quoted + b"." + smtplib.bCRLF)
        return self.getreply()


def _smtp_send(message: EmailMessage, settings: Settings, before_body: Callable[[], None]) -> None:
    """Send over SMTP, sorting failures into transient (retry), permanent, and maybe-sent."""
    try:
        smtp = _HandOverSMTP(settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout)
        smtp.before_body = before_body
    except (OSError, smtplib.SMTPException) as error:
        raise TransientTaskError(f"SMTP server unreachable: {type(error).__name__}: {error}") from None
    try:
        try:
            if settings.smtp_use_tls:
                smtp.starttls()
            if settings.smtp_user:
                smtp.login(settings.smtp_user, settings.smtp_password)
        except smtplib.SMTPResponseException as reply:
            raise _refusal(reply.smtp_code, _decode(reply.smtp_error), "SMTP session") from None
        except (OSError, smtplib.SMTPException) as error:
            # STARTTLS or AUTH not offered, or the connection dropped before the message.
            raise TransientTaskError(f"SMTP session failed: {type(error).__name__}: {error}") from None
        try:
            smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as refused:
            replies = list(refused.recipients.values())
            detail = "; ".join(f"{code} {_decode(text)}" for code, text in replies)
            raise _refusal(min(code for code, _ in replies), detail, "recipient") from None
        except smtplib.SMTPResponseException as reply:
            # The server answered no: the message was not accepted.
            raise _refusal(reply.smtp_code, _decode(reply.smtp_error), "SMTP server") from None
        except (OSError, smtplib.SMTPException) as error:
            if not smtp.body_started:
                raise TransientTaskError(f"SMTP session failed: {type(error).__name__}: {error}") from None
            raise MaybeSent(f"{type(error).__name__}: {error}") from None
    finally:
        with contextlib.suppress(OSError, smtplib.SMTPException):
            smtp.quit()


async def _claim(task_id: str, recipient: str, subject: str, message_id: str) -> DeliveryStatus | None:
    """Claim the delivery for this task; returns the earlier status when there was one."""
    async with get_database_router().write_session() as session:
        inserted = await session.scalar(
            insert(EmailDelivery)
            .values(
                id=task_id, recipient=recipient, subject=subject, status=DeliveryStatus.sending, message_id=message_id
            )
            .on_conflict_do_nothing(index_elements=[EmailDelivery.id])
            .returning(EmailDelivery.id)
        )
        if inserted is not None:
            return None
        # A failed attempt (known not sent) releases the delivery, and so does one that died
        # before the body left for the server; one attempt takes it back.
        retaken = await session.scalar(
            update(EmailDelivery)
            .where(
                EmailDelivery.id == task_id,
                (EmailDelivery.status == DeliveryStatus.failed)
                | ((EmailDelivery.status == DeliveryStatus.sending) & EmailDelivery.handed_over_at.is_(None)),
            )
            .values(status=DeliveryStatus.sending, handed_over_at=None)
            .returning(EmailDelivery.id)
        )
        if retaken is not None:
            return None
        return await session.scalar(select(EmailDelivery.status).where(EmailDelivery.id == task_id))


async def _note_handed_over(task_id: str) -> None:
    async with get_database_router().write_session() as session:
        await session.execute(
            update(EmailDelivery).where(EmailDelivery.id == task_id).values(handed_over_at=func.now())
        )


def _handing_over(task_id: str) -> Callable[[], None]:
    def note() -> None:
        try:
            run_async(_note_handed_over(task_id))
        except Exception as error:
            if not is_connection_error(error):
                raise
            # Not noted, so not sent: the session ends before the body and a retry sends it.
            raise TransientTaskError(f"database unavailable before the message body: {error}") from None

    return note


async def _settle(task_id: str, status: DeliveryStatus, error: str | None = None) -> None:
    async with get_database_router().write_session() as session:
        await session.execute(
            update(EmailDelivery).where(EmailDelivery.id == task_id).values(status=status, last_error=error)
        )


def deliver(*, task_id: str, to_email: str, to_name: str, template: str, context: dict[str, Any]) -> dict[str, Any]:
    """Render and send one email for one task; a redelivered task does not send it again."""
    settings = get_settings()
    rendered = render(template, context, settings)
    domain = settings.smtp_from_email.rpartition("@")[2] or "localhost"
    message_id = f"<{task_id}@{domain}>"
    previous = run_async(_claim(task_id, to_email, rendered.subject, message_id))
    if previous is DeliveryStatus.sent:
        logger.info("email for task %s was already sent; not sending again", task_id)
        return {"template": template, "sent": True, "duplicate": True}
    if previous is DeliveryStatus.sending:
        raise PermanentTaskError(
            "an earlier attempt stopped while the SMTP server was taking the message; "
            "not sending again so it cannot arrive twice"
        )
    message = build_message(
        message_id=message_id, to_email=to_email, to_name=to_name, email=rendered, settings=settings
    )
    if not settings.smtp_host:
        logger.info("SMTP_HOST is empty: email not sent, logged instead\n%s", message.as_string())
    else:
        try:
            _smtp_send(message, settings, _handing_over(task_id))
        except (TransientTaskError, PermanentTaskError) as error:
            # Known not sent: a retry or a requeue may send it.
            run_async(_settle(task_id, DeliveryStatus.failed, str(error)))
            raise
        except MaybeSent as error:
            # The row stays "sending": no attempt will send it again.
            raise PermanentTaskError(f"connection lost while the SMTP server took the message ({error})") from None
    # Sent: a database that is restarting right now must not leave the row "sending", which
    # would fail every later attempt as an unknown outcome.
    run_async_when_database_answers(lambda: _settle(task_id, DeliveryStatus.sent))
    logger.info("email %r sent to %s (task %s)", rendered.subject, to_email, task_id)
    return {"template": template, "sent": bool(settings.smtp_host)}

"""Rendering and sending email, once per task.

Runs in the Celery worker, each task as one coroutine (one `run_async`): the delivery
bookkeeping on the worker's loop, the SMTP session (smtplib, blocking) in a thread.

A task may be delivered twice (see BACKGROUND_JOBS_SETUP.md). Before talking to the SMTP
server the task claims its row in `email_deliveries`; a delivery of a task whose email is
`sent` sends nothing, and one that finds another attempt's row touched in the last
3 x SMTP_TIMEOUT waits until that attempt cannot be alive any more. SMTP leaves one window
no client can close: a worker that dies after the message body started towards the server
and before the server's answer cannot know whether the server kept it. The row notes when
the body started (after the server's go-ahead to DATA), so that window is only the body
and the answer; an attempt that died before it is simply sent again. One that died inside
it is sent again too, with the same Message-ID (derived from the task id), which receiving
systems use to collapse copies: a password reset that never arrives is worse than one a
receiver might see twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import smtplib
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formataddr
from functools import lru_cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from backend_app.core.config import Settings, get_settings
from backend_app.core.tracing import client_span
from backend_app.db.errors import is_connection_error
from backend_app.db.lifecycle import get_database_router
from backend_app.emails import repository
from backend_app.emails.models import DeliveryStatus
from backend_app.tasks.errors import PermanentTaskError, TransientTaskError
from backend_app.worker.runtime import RECORD_WAIT_SECONDS, run_async

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


class _InterruptibleSmtp:
    """The SMTP session a task's thread runs, as its coroutine sees it: interrupting the task
    (Celery's soft time limit) interrupts the session where it stands, as it would if the
    session ran on the task's own thread."""

    def __init__(self) -> None:
        self.interrupted = threading.Event()
        self.smtp: _HandOverSMTP | None = None

    def interrupt(self) -> None:
        self.interrupted.set()
        sock = self.smtp.sock if self.smtp is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                # The plain socket's shutdown, under TLS too: the thread's read or write fails now.
                socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _smtp_send(
    message: EmailMessage,
    settings: Settings,
    before_body: Callable[[], None],
    line: _InterruptibleSmtp | None = None,
) -> None:
    """Send over SMTP, sorting failures into transient (retry), permanent, and maybe-sent."""
    try:
        smtp = _HandOverSMTP(timeout=settings.smtp_timeout)
        smtp.before_body = before_body
        if line is not None:
            line.smtp = smtp
        code, reply = smtp.connect(settings.smtp_host, settings.smtp_port)
        if code != 220:  # as smtplib.SMTP(host, port) does
            smtp.close()
            raise smtplib.SMTPConnectError(code, reply)
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


@dataclass(frozen=True)
class Claim:
    taken: bool  # this attempt may send
    previous: DeliveryStatus | None  # what it found (None: nothing, a first attempt)
    outcome_unknown: bool = False  # it takes over from an attempt that died mid-body
    wait_seconds: float = 0.0  # not taken: another attempt touched it this recently


async def _claim(task_id: str, recipient: str, subject: str, message_id: str, *, abandoned_after: float) -> Claim:
    """Claim the delivery for this task. An attempt that failed (known not sent), or one
    whose row nobody touched for `abandoned_after` seconds (its worker died while sending),
    releases it; a `sending` row touched more recently may belong to a live attempt."""
    async with get_database_router().write_session() as session:
        if await repository.insert_sending(
            session, task_id=task_id, recipient=recipient, subject=subject, message_id=message_id
        ):
            return Claim(taken=True, previous=None)
        found = await repository.state_for_update(session, task_id)
        if found.status is DeliveryStatus.sent:
            return Claim(taken=False, previous=found.status)
        if found.status is DeliveryStatus.sending and found.idle_seconds < abandoned_after:
            return Claim(taken=False, previous=found.status, wait_seconds=abandoned_after - found.idle_seconds)
        await repository.take_over(session, task_id)
        unknown = found.status is DeliveryStatus.sending and found.body_started
        return Claim(taken=True, previous=found.status, outcome_unknown=unknown)


async def _note_handed_over(task_id: str) -> None:
    async with get_database_router().write_session() as session:
        await repository.note_handed_over(session, task_id)


async def _settle(task_id: str, status: DeliveryStatus, error: str | None = None) -> None:
    async with get_database_router().write_session() as session:
        await repository.settle(session, task_id, status, error)


async def _when_database_answers(
    record: Callable[[], Awaitable[None]], *, seconds: float = RECORD_WAIT_SECONDS
) -> None:
    """`run_async_when_database_answers` inside the task's coroutine: `record()`, tried again
    while the database cannot be reached, for up to `seconds`; then the last error is raised."""
    deadline = time.monotonic() + seconds
    delay = 0.25
    while True:
        try:
            return await record()
        except Exception as error:
            if not is_connection_error(error) or time.monotonic() + delay > deadline:
                raise
            logger.warning("database unavailable (%s); trying again in %.1fs", type(error).__name__, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def _send(message: EmailMessage, settings: Settings, task_id: str) -> None:
    """Run the SMTP session in a thread; the hand-over is noted on this loop, from the thread,
    between the server's go-ahead to DATA and the body."""
    loop = asyncio.get_running_loop()
    line = _InterruptibleSmtp()

    def note_handed_over() -> None:
        if line.interrupted.is_set():
            raise TransientTaskError("the attempt was interrupted before the message body")
        noting = asyncio.run_coroutine_threadsafe(_note_handed_over(task_id), loop)
        try:
            noting.result(timeout=settings.smtp_timeout)
        except Exception as error:
            noting.cancel()
            if not is_connection_error(error):
                raise
            # Not noted, so not sent: the session ends before the body and a retry sends it.
            raise TransientTaskError(
                f"database unavailable before the message body: {type(error).__name__}: {error}"
            ) from None
        if line.interrupted.is_set():
            raise TransientTaskError("the attempt was interrupted before the message body")

    def send() -> None:
        # With traces on, a span of the task's run span (no instrumentor sees smtplib).
        with client_span("smtp send", {"server.address": settings.smtp_host, "server.port": settings.smtp_port}):
            _smtp_send(message, settings, note_handed_over, line)

    # In this context, so the span has its parent and the thread's log lines name the request.
    sending = loop.run_in_executor(None, contextvars.copy_context().run, send)
    try:
        # Shielded, so that an interruption reaches the thread through `line`, not by abandoning it.
        await asyncio.shield(sending)
    except BaseException:
        if not sending.done():  # interrupted (cancelled by run_async) while the session runs
            line.interrupt()
            sending.add_done_callback(_log_interrupted_session)
        raise


def _log_interrupted_session(ended: asyncio.Future[None]) -> None:
    # The task failed with its interruption; how the session it left ended is only worth a line.
    if not ended.cancelled() and ended.exception() is not None:
        logger.info("an interrupted SMTP session ended: %s", ended.exception())


async def _deliver_once(
    *, task_id: str, to_email: str, subject: str, message_id: str, message: EmailMessage, settings: Settings
) -> bool:
    """Claim the task's delivery, send, and record the outcome; True when an earlier attempt
    had sent it already."""
    # A live attempt finishes its SMTP session within a few SMTP_TIMEOUTs; a row left
    # "sending" longer than that was left by a worker that died.
    abandoned_after = 3 * settings.smtp_timeout
    claim = await _claim(task_id, to_email, subject, message_id, abandoned_after=abandoned_after)
    if claim.wait_seconds:
        # Redelivered right after a worker died mid-send (or a concurrent copy): wait until
        # the other attempt cannot be alive any more, then take over.
        await asyncio.sleep(claim.wait_seconds + 0.5)
        claim = await _claim(task_id, to_email, subject, message_id, abandoned_after=abandoned_after)
    if claim.previous is DeliveryStatus.sent:
        logger.info("email for task %s was already sent; not sending again", task_id)
        return True
    if not claim.taken:
        raise TransientTaskError("another attempt of this task is sending its email")
    if claim.outcome_unknown:
        logger.warning(
            "email for task %s: an earlier attempt died while the SMTP server was taking it; sending again"
            " with the same Message-ID %s (a lost email is worse than one the receiver may see twice)",
            task_id,
            message_id,
        )
    if not settings.smtp_host:
        logger.info("SMTP_HOST is empty: email not sent, logged instead\n%s", message.as_string())
    else:
        try:
            await _send(message, settings, task_id)
        except (TransientTaskError, PermanentTaskError) as error:
            # Known not sent: a retry or a requeue may send it.
            await _settle(task_id, DeliveryStatus.failed, str(error))
            raise
        except MaybeSent as error:
            # The row stays "sending" (body handed over): the retry, once the row is old
            # enough, sends again with the same Message-ID.
            raise TransientTaskError(f"connection lost while the SMTP server took the message ({error})") from None
    # Sent: a database that is restarting right now must not leave the row "sending", which
    # would fail every later attempt as an unknown outcome.
    await _when_database_answers(lambda: _settle(task_id, DeliveryStatus.sent))
    return False


def deliver(*, task_id: str, to_email: str, to_name: str, template: str, context: dict[str, Any]) -> dict[str, Any]:
    """Render and send one email for one task; a redelivered task does not send it again."""
    settings = get_settings()
    rendered = render(template, context, settings)
    domain = settings.smtp_from_email.rpartition("@")[2] or "localhost"
    message_id = f"<{task_id}@{domain}>"
    message = build_message(
        message_id=message_id, to_email=to_email, to_name=to_name, email=rendered, settings=settings
    )
    already_sent = run_async(
        _deliver_once(
            task_id=task_id,
            to_email=to_email,
            subject=rendered.subject,
            message_id=message_id,
            message=message,
            settings=settings,
        )
    )
    if already_sent:
        return {"template": template, "sent": True, "duplicate": True}
    logger.info("email %r sent to %s (task %s)", rendered.subject, to_email, task_id)
    return {"template": template, "sent": bool(settings.smtp_host)}

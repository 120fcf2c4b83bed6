"""Email delivery through a real Celery worker to a real SMTP server: retries, refusals, once-only."""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
from billiard.exceptions import SoftTimeLimitExceeded

from backend_app.core.celery_app import celery_app
from backend_app.core.config import get_settings
from backend_app.emails.service import build_message, render
from devtools.devstack import LocalStack
from tests.conftest import SmtpSink, wait_for_mail
from tests.processes import celery_worker, wait_until
from tests.run_async_calls import count_run_async

WELCOME = "backend_app.core.celery_tasks.send_welcome_email"
WELCOME_ARGS = {"user_email": "ada@example.com", "user_name": "Ada Lovelace", "username": "ada"}


def task_field(stack: LocalStack, task_id: str, column: str) -> str:
    assert stack.primary is not None
    return stack.primary.psql(f"SELECT {column} FROM task_records WHERE id = '{task_id}'")


async def test_smtp_down_retries_and_delivers_once_it_is_back(
    smtp_sink: SmtpSink, stack: LocalStack, tmp_path: Path, test_task_tables: None
) -> None:
    smtp_sink.stop()
    worker = celery_worker(tmp_path).start()
    try:
        celery_app.send_task(WELCOME, kwargs=WELCOME_ARGS, task_id="welcome-while-down", queue="emails")
        await wait_until(lambda: int(task_field(stack, "welcome-while-down", "attempts") or 0) >= 2, what="a retry")
        assert "SMTP server unreachable" in task_field(stack, "welcome-while-down", "last_error")
        smtp_sink.start()
        await wait_for_mail(smtp_sink, "ada@example.com")
        await wait_until(lambda: task_field(stack, "welcome-while-down", "status") == "succeeded", what="success")
    finally:
        worker.stop()
    assert int(task_field(stack, "welcome-while-down", "attempts")) >= 2
    assert len(smtp_sink.to("ada@example.com")) == 1


async def test_permanent_refusal_fails_without_retrying(mail_workers: SmtpSink, stack: LocalStack) -> None:
    mail_workers.reply = "550 5.1.1 No such mailbox"

    celery_app.send_task(WELCOME, kwargs=WELCOME_ARGS, task_id="welcome-refused", queue="emails")

    await wait_until(lambda: task_field(stack, "welcome-refused", "status") == "failed", what="the failure")
    await asyncio.sleep(2.5)  # longer than a retry would wait in the tests
    assert task_field(stack, "welcome-refused", "status") == "failed"
    assert task_field(stack, "welcome-refused", "attempts") == "1"
    assert "550 5.1.1 No such mailbox" in task_field(stack, "welcome-refused", "last_error")


async def test_temporary_refusal_is_retried(mail_workers: SmtpSink, stack: LocalStack) -> None:
    mail_workers.reply = "451 4.3.0 Try again later"

    celery_app.send_task(WELCOME, kwargs=WELCOME_ARGS, task_id="welcome-deferred", queue="emails")
    # A second attempt after the refusal; its `retrying` moment may last only milliseconds
    # (the retry countdown is jittered down to zero), so the attempts say it.
    await wait_until(lambda: int(task_field(stack, "welcome-deferred", "attempts") or 0) >= 2, what="a retry")
    mail_workers.reply = None

    await wait_for_mail(mail_workers, "ada@example.com")
    await wait_until(lambda: task_field(stack, "welcome-deferred", "status") == "succeeded", what="success")
    assert "451 4.3.0" in task_field(stack, "welcome-deferred", "last_error")


async def test_a_redelivered_task_never_sends_the_same_email_twice(mail_workers: SmtpSink, stack: LocalStack) -> None:
    celery_app.send_task(WELCOME, kwargs=WELCOME_ARGS, task_id="welcome-once", queue="emails")
    await wait_until(lambda: task_field(stack, "welcome-once", "status") == "succeeded", what="the first delivery")

    # A redelivery after a success, and one after a worker that died before recording it.
    celery_app.send_task(WELCOME, kwargs=WELCOME_ARGS, task_id="welcome-once", queue="emails")
    assert stack.primary is not None
    stack.primary.psql("UPDATE task_records SET status = 'started' WHERE id = 'welcome-once'")
    celery_app.send_task(WELCOME, kwargs=WELCOME_ARGS, task_id="welcome-once", queue="emails")
    await wait_until(lambda: task_field(stack, "welcome-once", "status") == "succeeded", what="the redelivery")
    await asyncio.sleep(1)

    assert len(mail_workers.to("ada@example.com")) == 1
    assert task_field(stack, "welcome-once", "result::text").find('"duplicate": true') >= 0


def test_names_with_line_breaks_cannot_inject_headers() -> None:
    settings = get_settings()
    email = render("welcome", {"user_name": "Eve\r\nBcc: victim@example.com", "username": "eve"}, settings)

    message = build_message(
        message_id="<x@example.com>",
        to_email="eve@example.com",
        to_name="Eve\r\nBcc: victim@example.com",
        email=email,
        settings=settings,
    )

    headers = message.as_string().split("\n\n", 1)[0]
    assert not any(line.startswith("Bcc:") for line in headers.splitlines())
    assert message["Bcc"] is None
    assert message["To"] == '"Eve Bcc: victim@example.com" <eve@example.com>'
    assert "\r" not in message["Subject"]
    assert "\n" not in message["Subject"]


async def test_cleanup_old_notifications_runs_once_a_day(mail_workers: SmtpSink, stack: LocalStack) -> None:
    # As if two beat processes each sent the daily clean-up.
    for n in range(2):
        celery_app.send_task(
            "backend_app.core.celery_tasks.cleanup_old_notifications", task_id=f"cleanup-{n}", queue="emails"
        )
    await wait_until(
        lambda: (
            task_field(stack, "cleanup-1", "status") == "succeeded"
            and task_field(stack, "cleanup-0", "status") == "succeeded"
        ),
        what="both clean-ups",
    )

    results = {task_field(stack, f"cleanup-{n}", "result::text") for n in range(2)}
    assert results == {'{"deleted": 0}', '{"deleted": 0, "skipped": "already ran today"}'}


async def test_a_primary_restart_right_after_the_server_took_the_email_ends_sent_not_failed(
    smtp_sink: SmtpSink, stack: LocalStack, tmp_path: Path, test_task_tables: None
) -> None:
    import threading

    assert stack.primary is not None
    primary = stack.primary
    restarted = threading.Event()

    def restart_primary() -> None:
        primary.stop()
        time_down = 3
        threading.Timer(time_down, lambda: (primary.start(), restarted.set())).start()

    # The SMTP server takes the message; the primary goes down before the worker can record it.
    original = smtp_sink.handle_DATA

    async def take_then_restart(server: object, session: object, envelope: object) -> str:
        reply = await original(server, session, envelope)
        if not restarted.is_set() and not getattr(take_then_restart, "done", False):
            take_then_restart.done = True  # type: ignore[attr-defined]
            threading.Thread(target=restart_primary).start()
            await asyncio.sleep(1.5)  # the reply reaches the worker once the primary is stopping
        return reply

    smtp_sink.handle_DATA = take_then_restart  # type: ignore[method-assign]
    worker = celery_worker(tmp_path).start()
    try:
        celery_app.send_task(WELCOME, kwargs=WELCOME_ARGS, task_id="welcome-restart", queue="emails")
        await wait_for_mail(smtp_sink, "ada@example.com")
        await wait_until(restarted.is_set, seconds=30, what="the primary back")
        await wait_until(
            lambda: task_field(stack, "welcome-restart", "status") == "succeeded", seconds=60, what="success"
        )
    finally:
        worker.stop()
    assert len(smtp_sink.to("ada@example.com")) == 1
    assert primary.psql("SELECT status FROM email_deliveries WHERE id = 'welcome-restart'") == "sent"


def left_sending(stack: LocalStack, task_id: str, *, handed_over: bool) -> None:
    """A delivery row as an attempt whose worker died mid-session a minute ago leaves it."""
    assert stack.primary is not None
    stack.primary.psql(
        "INSERT INTO email_deliveries (id, recipient, subject, status, message_id, handed_over_at, updated_at)"
        f" VALUES ('{task_id}', 'ada@example.com', 'Welcome', 'sending', '<{task_id}@x>',"
        f" {'now()' if handed_over else 'NULL'}, now() - interval '1 minute')"
    )


async def test_an_attempt_that_died_before_the_body_left_is_sent_by_the_next(
    mail_workers: SmtpSink, stack: LocalStack
) -> None:
    left_sending(stack, "welcome-died-early", handed_over=False)

    celery_app.send_task(WELCOME, kwargs=WELCOME_ARGS, task_id="welcome-died-early", queue="emails")

    await wait_for_mail(mail_workers, "ada@example.com")
    await wait_until(lambda: task_field(stack, "welcome-died-early", "status") == "succeeded", what="success")
    assert len(mail_workers.to("ada@example.com")) == 1


async def test_an_attempt_that_died_while_the_server_took_the_body_is_sent_again_with_the_same_message_id(
    mail_workers: SmtpSink, stack: LocalStack
) -> None:
    left_sending(stack, "welcome-died-late", handed_over=True)

    celery_app.send_task(WELCOME, kwargs=WELCOME_ARGS, task_id="welcome-died-late", queue="emails")

    (email,) = await wait_for_mail(mail_workers, "ada@example.com")
    await wait_until(lambda: task_field(stack, "welcome-died-late", "status") == "succeeded", what="success")
    assert email["Message-ID"].startswith("<welcome-died-late@")


async def test_a_delivery_another_attempt_is_sending_right_now_is_not_sent_twice(
    mail_workers: SmtpSink, stack: LocalStack
) -> None:
    assert stack.primary is not None
    left_sending(stack, "welcome-busy", handed_over=True)
    stack.primary.psql("UPDATE email_deliveries SET updated_at = now() WHERE id = 'welcome-busy'")

    celery_app.send_task(WELCOME, kwargs=WELCOME_ARGS, task_id="welcome-busy", queue="emails")
    await wait_until(lambda: task_field(stack, "welcome-busy", "status") == "started", what="the attempt to start")
    # The other attempt finishes meanwhile: this one must find it sent and send nothing.
    stack.primary.psql("UPDATE email_deliveries SET status = 'sent' WHERE id = 'welcome-busy'")

    await wait_until(
        lambda: task_field(stack, "welcome-busy", "status") == "succeeded", seconds=60, what="the attempt to end"
    )
    assert mail_workers.to("ada@example.com") == []


def test_an_email_task_is_one_coroutine(
    smtp_sink: SmtpSink, stack: LocalStack, worker_code_in_this_process: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backend_app.emails import service

    calls = count_run_async(monkeypatch, service)

    result = service.deliver(
        task_id="welcome-one-coroutine",
        to_email="ada@example.com",
        to_name="Ada Lovelace",
        template="welcome",
        context={"user_name": "Ada Lovelace", "username": "ada"},
    )

    assert result == {"template": "welcome", "sent": True}
    assert len(calls) == 1, "claim, SMTP, hand-over note and settle in one run_async"
    assert len(smtp_sink.to("ada@example.com")) == 1
    assert stack.primary is not None
    assert (
        stack.primary.psql(
            "SELECT status, handed_over_at IS NOT NULL FROM email_deliveries WHERE id = 'welcome-one-coroutine'"
        )
        == "sent|t"
    )


def test_an_interrupted_smtp_session_ends_at_once_without_a_body(
    stack: LocalStack, worker_code_in_this_process: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Celery's soft time limit while the SMTP server is slow to answer: the session in the
    task's thread ends now (not after SMTP_TIMEOUT), and the row says nothing went out."""
    from backend_app.emails import service

    silent = socket.create_server(("127.0.0.1", 0))
    closed_after: list[float] = []

    def accept_and_never_greet() -> None:
        connection, _ = silent.accept()
        accepted = time.monotonic()
        connection.recv(1)  # b"" once the client has shut the connection
        closed_after.append(time.monotonic() - accepted)
        connection.close()

    threading.Thread(target=accept_and_never_greet, daemon=True).start()
    monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SMTP_PORT", str(silent.getsockname()[1]))
    monkeypatch.setenv("SMTP_USE_TLS", "false")
    monkeypatch.setenv("SMTP_TIMEOUT", "20")
    get_settings.cache_clear()

    def soft_time_limit(signum: int, frame: object) -> None:
        raise SoftTimeLimitExceeded()

    previous = signal.signal(signal.SIGALRM, soft_time_limit)
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    try:
        with pytest.raises(SoftTimeLimitExceeded):
            service.deliver(
                task_id="welcome-interrupted",
                to_email="ada@example.com",
                to_name="Ada Lovelace",
                template="welcome",
                context={"user_name": "Ada Lovelace", "username": "ada"},
            )
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        get_settings.cache_clear()
    deadline = time.monotonic() + 5
    while not closed_after and time.monotonic() < deadline:
        time.sleep(0.05)
    silent.close()

    assert closed_after, "the server never saw the session end"
    assert closed_after[0] < 3, "the session should end with the interruption, not after SMTP_TIMEOUT"
    assert stack.primary is not None
    assert (
        stack.primary.psql(
            "SELECT status, handed_over_at IS NULL FROM email_deliveries WHERE id = 'welcome-interrupted'"
        )
        == "sending|t"
    )

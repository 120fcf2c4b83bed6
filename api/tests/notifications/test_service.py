"""notifications/service.py in this process: a job is one coroutine, and an interrupted push
stops at the device in flight."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from rq.timeouts import JobTimeoutException

from backend_app.core.config import get_settings
from backend_app.notifications import service
from backend_app.notifications.service import Notice
from devtools.devstack import LocalStack, free_port
from tests.notifications.test_push import PushReceiver
from tests.run_async_calls import count_run_async

pytestmark = pytest.mark.usefixtures("worker_code_in_this_process")

LIKE = Notice(user_id=0, type="like", title="New like", body="Bob liked your post")


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[PushReceiver]:
    server = PushReceiver(free_port())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("PUSH_PROVIDER", "webhook")
    monkeypatch.setenv("PUSH_WEBHOOK_URL", f"http://127.0.0.1:{server.server_port}/push")
    get_settings.cache_clear()
    yield server
    server.shutdown()
    get_settings.cache_clear()


@contextmanager
def job_timeout_after(seconds: float) -> Iterator[None]:
    """RQ's job timeout, as its death penalty raises it: a signal in this thread.

    A signal whose handler runs inside a weakref or GC callback has its exception dropped by
    Python ("Exception ignored", through `sys.unraisablehook`); on a loaded machine the
    alarm sometimes landed there and the test saw no timeout at all. Only then is it
    delivered again, 10 ms later, so the test still exercises one interruption."""

    def time_is_up(signum: int, frame: object) -> None:
        raise JobTimeoutException("the job's time is up")

    def dropped(unraisable: sys.UnraisableHookArgs) -> None:
        if isinstance(unraisable.exc_value, JobTimeoutException):
            signal.setitimer(signal.ITIMER_REAL, 0.01)
        else:
            previous_hook(unraisable)

    previous = signal.signal(signal.SIGALRM, time_is_up)
    previous_hook, sys.unraisablehook = sys.unraisablehook, dropped
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        sys.unraisablehook = previous_hook


def two_devices(stack: LocalStack, make_user: Callable[..., tuple[int, str]]) -> Notice:
    assert stack.primary is not None
    ada_id, _ = make_user("ada")
    stack.primary.psql(
        "INSERT INTO devices (user_id, token, platform)"
        f" VALUES ({ada_id}, 'ada-phone', 'ios'), ({ada_id}, 'ada-tablet', 'ios')"
    )
    return Notice(user_id=ada_id, type=LIKE.type, title=LIKE.title, body=LIKE.body)


def test_a_notification_job_is_one_coroutine(
    stack: LocalStack,
    webhook: PushReceiver,
    make_user: Callable[..., tuple[int, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    notice = two_devices(stack, make_user)
    calls = count_run_async(monkeypatch, service)

    result = service.notify(task_id="like-once", notice=notice)

    assert len(calls) == 1, "store, push and record in one run_async"
    assert result["pushed"] == 2
    assert sorted(p["token"] for p in webhook.received) == ["ada-phone", "ada-tablet"]
    assert stack.primary is not None
    assert stack.primary.psql("SELECT pushed_at IS NOT NULL FROM notifications") == "t"


def test_an_interrupted_push_sends_no_further_request_and_keeps_the_device_in_flight(
    stack: LocalStack, webhook: PushReceiver, make_user: Callable[..., tuple[int, str]]
) -> None:
    notice = two_devices(stack, make_user)
    # The phone answers after a second; the job's time is up while it waits for that answer.
    webhook.status_for = lambda payload: (time.sleep(1), 200)[1] if payload["token"] == "ada-phone" else 200
    reached: set[str] = set()

    with pytest.raises(JobTimeoutException), job_timeout_after(0.3):
        service.notify(task_id="like-interrupted", notice=notice, reached=reached)
    time.sleep(1)  # a thread left running would push to the tablet by now

    assert [p["token"] for p in webhook.received] == ["ada-phone"]
    assert reached == {"ada-phone"}, "the answer in flight was waited for"
    assert stack.primary is not None
    assert stack.primary.psql("SELECT pushed_tokens, pushed_at IS NULL FROM notifications") == "{ada-phone}|t"

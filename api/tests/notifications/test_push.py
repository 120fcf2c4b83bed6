"""Follow -> in-app notification and a push through the webhook provider, with real workers."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from rq import Callback, Queue, Retry
from rq.job import Job
from rq.registry import StartedJobRegistry

from backend_app.core import rq_app
from backend_app.core.config import get_settings
from backend_app.notifications.push import OneSignalProvider, Push, Target, WebhookProvider
from backend_app.tasks.errors import PermanentTaskError, TransientTaskError
from devtools.devstack import LocalStack, free_port
from tests.accounts import sign_up
from tests.processes import Worker, relay, rq_worker, rq_worker_of_class, wait_until

LIKE_JOB = "backend_app.core.rq_tasks.send_new_like_notification_job"


class PushReceiver(ThreadingHTTPServer):
    """A local HTTP server speaking the webhook (and OneSignal) push formats."""

    def __init__(self, port: int) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.received: list[dict] = []
        self.status_for: Callable[[dict], int] = lambda payload: 200
        self.reply: dict = {"id": "ok"}


class _Handler(BaseHTTPRequestHandler):
    server: PushReceiver

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
            # The OAuth2 token endpoint (google-auth's service-account flow).
            payload = {key: values[0] for key, values in parse_qs(raw.decode()).items()}
        else:
            payload = json.loads(raw)
        payload["_path"] = self.path
        payload["_authorization"] = self.headers.get("Authorization")
        payload["_idempotency_key"] = self.headers.get("Idempotency-Key")
        self.server.received.append(payload)
        status = self.server.status_for(payload)  # may choose the reply too
        body = json.dumps(self.server.reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[PushReceiver]:
    server = PushReceiver(free_port())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("PUSH_PROVIDER", "webhook")
    monkeypatch.setenv("PUSH_WEBHOOK_URL", f"http://127.0.0.1:{server.server_port}/push")
    monkeypatch.setenv("PUSH_WEBHOOK_SECRET", "hook-secret")
    get_settings.cache_clear()
    yield server
    server.shutdown()
    get_settings.cache_clear()


def batch_worker(log_dir: Path) -> Worker:
    """One BatchWorker on the notifications queue: for the tests of its batching (a pool of
    them, as the Procfile runs, would split a batch between its workers)."""
    return rq_worker_of_class(log_dir, "BatchWorker", "notifications")


@pytest.fixture
def notification_workers(receiver: PushReceiver, tmp_path: Path) -> Iterator[PushReceiver]:
    workers = [
        relay(tmp_path),
        rq_worker(tmp_path),
    ]
    try:
        for worker in workers:
            worker.start()
        yield receiver
    finally:
        for worker in workers:
            worker.stop()


async def test_follow_notifies_in_app_and_pushes_to_devices(
    client: httpx.AsyncClient, stack: LocalStack, notification_workers: PushReceiver
) -> None:
    ada_id, ada = await sign_up(client, "ada")
    _, bob = await sign_up(client, "bob")
    notification_workers.status_for = lambda payload: 410 if payload["token"].startswith("dead-") else 200
    assert (
        await client.post("/api/devices", json={"token": "phone-token-1", "platform": "ios"}, headers=ada)
    ).status_code == 201
    await client.post("/api/devices", json={"token": "dead-token-22", "platform": "android"}, headers=ada)
    stack.wait_for_replicas()

    first = await client.post(f"/api/users/{ada_id}/follow", headers=bob)
    again = await client.post(f"/api/users/{ada_id}/follow", headers=bob)
    assert first.status_code == again.status_code == 204

    await wait_until(lambda: len(notification_workers.received) == 2, what="two push attempts")
    await wait_until(
        lambda: stack.primary is not None and stack.primary.psql("SELECT count(*) FROM devices") == "1",
        what="the invalid token to be removed",
    )
    stack.wait_for_replicas()
    inbox = (await client.get("/api/notifications", headers=ada)).json()

    assert inbox["total"] == 1, "following twice notifies once"
    assert inbox["items"][0]["body"] == "Bob Tester started following you"
    assert inbox["items"][0]["type"] == "follow"
    pushed = {p["token"]: p for p in notification_workers.received}
    assert pushed["phone-token-1"]["title"] == "New follower"
    assert pushed["phone-token-1"]["_authorization"] == "Bearer hook-secret"
    followers = (await client.get(f"/api/users/{ada_id}/followers", headers=ada)).json()
    assert [u["username"] for u in followers["items"]] == ["bob"]


async def test_push_preference_off_keeps_the_notification_in_app_only(
    client: httpx.AsyncClient, stack: LocalStack, notification_workers: PushReceiver
) -> None:
    ada_id, ada = await sign_up(client, "ada")
    _, bob = await sign_up(client, "bob")
    await client.post("/api/devices", json={"token": "phone-token-1", "platform": "ios"}, headers=ada)
    preference = await client.put("/api/notifications/preferences", json={"type": "follow", "push": False}, headers=ada)
    assert preference.status_code == 200
    stack.wait_for_replicas()

    await client.post(f"/api/users/{ada_id}/follow", headers=bob)

    assert stack.primary is not None
    await wait_until(lambda: stack.primary.psql("SELECT count(*) FROM notifications") == "1", what="the notification")
    assert notification_workers.received == []


async def test_batch_worker_stores_a_batch_of_notifications_at_once_and_pushes_each(
    stack: LocalStack, receiver: PushReceiver, make_user: Callable[..., tuple[int, str]], tmp_path: Path
) -> None:
    assert stack.primary is not None
    ada_id, _ = make_user("ada")  # one device
    bob_id, _ = make_user("bob")  # no device
    cy_id, _ = make_user("cy")  # a device, but likes are not pushed to her
    stack.primary.psql(
        "INSERT INTO devices (user_id, token, platform)"
        f" VALUES ({ada_id}, 'ada-phone', 'ios'), ({cy_id}, 'cy-phone', 'ios');"
        f" INSERT INTO notification_preferences (user_id, type, push, email) VALUES ({cy_id}, 'like', false, true)"
    )

    def like_kwargs(owner_id: int, post_id: int) -> dict[str, Any]:
        return {"liker_id": bob_id, "liker_name": "Bob", "post_owner_id": owner_id, "post_id": post_id}

    def like(owner_id: int, post_id: int) -> None:
        rq_app.publish("notifications", LIKE_JOB, kwargs=like_kwargs(owner_id, post_id))

    def stored() -> str:
        return stack.primary.psql("SELECT count(*) FROM notifications") if stack.primary else ""

    # First batch: one job names a user that does not exist, so the batch statement is refused
    # and every job does its own work: the good three are delivered, the bad one retries.
    for owner_id in (ada_id, bob_id, cy_id, 10**12):
        like(owner_id, post_id=1)
    worker = batch_worker(tmp_path).start()
    try:
        await wait_until(lambda: stored() == "3", what="three notifications stored one by one")
        await wait_until(
            lambda: "batch of 4 from notifications: 3 succeeded, 1 retrying" in worker.output(), what="batch one"
        )
        # Second batch, all good: stored together (no fallback warning this time). Enqueued in
        # one Redis transaction, so the waiting worker cannot wake for the first alone.
        rq_app.get_queue("notifications").enqueue_many(
            [
                Queue.prepare_data(LIKE_JOB, kwargs=like_kwargs(owner_id, post_id=2))
                for owner_id in (ada_id, bob_id, cy_id)
            ]
        )
        await wait_until(lambda: stored() == "6", what="three more notifications")
        await wait_until(
            lambda: "batch of 3 from notifications: 3 succeeded, 0 retrying" in worker.output(), what="batch two"
        )
    finally:
        worker.stop()

    output = worker.output()
    assert output.count("could not prepare 4 backend_app.core.rq_tasks.send_new_like_notification_job jobs") == 1
    assert output.count("could not prepare") == 1
    assert sorted(p["token"] for p in receiver.received) == ["ada-phone", "ada-phone"]
    assert [p["body"] for p in receiver.received] == ["Bob liked your post"] * 2
    assert stack.primary.psql(
        "SELECT string_agg(u.username || ':' || (n.pushed_at IS NOT NULL), ',' ORDER BY n.id)"
        " FROM notifications n JOIN users u ON u.id = n.user_id"
    ) == ("ada:true,bob:false,cy:false,ada:true,bob:false,cy:false")
    assert stack.primary.psql("SELECT count(*) FROM task_records WHERE status = 'succeeded'") == "6"


def give_phone_and_tablet(stack: LocalStack, user_id: int) -> None:
    """Two devices for one user: ada-phone, then ada-tablet (pushed in that order)."""
    assert stack.primary is not None
    stack.primary.psql(
        "INSERT INTO devices (user_id, token, platform)"
        f" VALUES ({user_id}, 'ada-phone', 'ios'), ({user_id}, 'ada-tablet', 'ios')"
    )


async def run_like_retried_at_once(log_dir: Path, *, liker_id: int, owner_id: int) -> tuple[Job, Worker]:
    """A like notification whose retries come at once (so the test need not run RQ's
    scheduler), run by the batch worker until it finishes; the worker is stopped on return."""
    job = rq_app.get_queue("notifications").enqueue_call(
        LIKE_JOB,
        kwargs={"liker_id": liker_id, "liker_name": "Bob", "post_owner_id": owner_id, "post_id": 1},
        retry=Retry(max=2),
        on_failure=Callback(rq_app.FAILURE_CALLBACK),
    )
    worker = batch_worker(log_dir).start()
    try:
        await wait_until(lambda: rq_app.get_job_status(job.id)["status"] == "finished", what="the retried job")
    finally:
        worker.stop()
    return job, worker


async def test_a_retried_push_skips_the_devices_the_first_attempt_reached(
    stack: LocalStack, receiver: PushReceiver, make_user: Callable[..., tuple[int, str]], tmp_path: Path
) -> None:
    assert stack.primary is not None
    ada_id, _ = make_user("ada")
    bob_id, _ = make_user("bob")
    give_phone_and_tablet(stack, ada_id)
    tablet_answers = iter([503])  # the tablet's first push fails transiently, then 200s
    receiver.status_for = lambda payload: next(tablet_answers, 200) if payload["token"] == "ada-tablet" else 200
    job, _ = await run_like_retried_at_once(tmp_path, liker_id=bob_id, owner_id=ada_id)

    # Phone once, tablet twice (refused, then delivered): the retry did not push the phone again.
    assert [p["token"] for p in receiver.received] == ["ada-phone", "ada-tablet", "ada-tablet"]
    assert stack.primary.psql("SELECT count(*), bool_and(pushed_at IS NOT NULL) FROM notifications") == "1|t"
    assert stack.primary.psql("SELECT status, attempts FROM task_records") == "succeeded|2"
    assert job.get_meta(refresh=True)["pushed_tokens"] == ["ada-phone"]


async def test_a_push_whose_record_failed_is_not_sent_again_on_retry(
    stack: LocalStack, receiver: PushReceiver, make_user: Callable[..., tuple[int, str]], tmp_path: Path
) -> None:
    assert stack.primary is not None
    ada_id, _ = make_user("ada")
    bob_id, _ = make_user("bob")
    # The first UPDATE that marks a notification pushed is refused (a sequence is not rolled
    # back with the failed transaction, so only the first one is): the push went out, its
    # record did not.
    stack.primary.psql(
        f"""
        INSERT INTO devices (user_id, token, platform) VALUES ({ada_id}, 'ada-phone', 'ios');
        CREATE SEQUENCE refuse_once;
        CREATE FUNCTION refuse_first_pushed_at() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.pushed_at IS NOT NULL AND nextval('refuse_once') = 1 THEN
                RAISE EXCEPTION 'refused by test trigger';
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER refuse_first_pushed_at BEFORE UPDATE ON notifications
            FOR EACH ROW EXECUTE FUNCTION refuse_first_pushed_at();
        """
    )
    try:
        _, worker = await run_like_retried_at_once(tmp_path, liker_id=bob_id, owner_id=ada_id)
    finally:
        stack.primary.psql(
            "DROP TRIGGER refuse_first_pushed_at ON notifications;"
            " DROP FUNCTION refuse_first_pushed_at(); DROP SEQUENCE refuse_once"
        )

    assert "refused by test trigger" in worker.output()
    assert [p["token"] for p in receiver.received] == ["ada-phone"]
    assert stack.primary.psql("SELECT count(*), bool_and(pushed_at IS NOT NULL) FROM notifications") == "1|t"
    assert stack.primary.psql("SELECT status, attempts FROM task_records") == "succeeded|2"


async def test_a_push_taken_from_a_worker_killed_before_recording_it_goes_again_with_the_same_key(
    stack: LocalStack, receiver: PushReceiver, make_user: Callable[..., tuple[int, str]], tmp_path: Path
) -> None:
    """The one window a retry cannot see: the provider took the push and the worker died
    (SIGKILL) before marking the notification pushed. The job runs again and pushes again;
    the same Idempotency-Key lets a provider that honours it deliver once."""
    assert stack.primary is not None
    ada_id, _ = make_user("ada")
    bob_id, _ = make_user("bob")
    give_phone_and_tablet(stack, ada_id)
    first = rq_worker(tmp_path)  # the Procfile's rq line: a pool of batch workers

    def kill_the_worker_when_the_phone_is_pushed(payload: dict) -> int:
        if payload["token"] == "ada-phone" and first.process is not None and first.process.poll() is None:
            os.killpg(first.process.pid, signal.SIGKILL)
            first.process.wait(timeout=10)
        return 200

    # The workers first, then the job: the kill must not land while the test still waits for
    # the pool to say it listens. The kill takes the pool's whole process group.
    receiver.status_for = kill_the_worker_when_the_phone_is_pushed
    first.start()
    queue = rq_app.get_queue("notifications")
    job = queue.enqueue_call(
        LIKE_JOB,
        kwargs={"liker_id": bob_id, "liker_name": "Bob", "post_owner_id": ada_id, "post_id": 1},
        retry=Retry(max=2),
    )
    try:
        await wait_until(lambda: first.process is not None and first.process.poll() is not None, what="the kill")
    finally:
        first.stop()
    assert stack.primary.psql("SELECT pushed_at IS NULL FROM notifications") == "t"  # never recorded
    # What RQ's maintenance does once the dead worker's job has expired: retry it.
    StartedJobRegistry(queue=queue).cleanup(timestamp=time.time() + 3600)
    second = rq_worker(tmp_path).start()
    try:
        await wait_until(lambda: job.get_status(refresh=True) == "finished", what="the job run again")
    finally:
        second.stop()

    notification_id = int(stack.primary.psql("SELECT id FROM notifications"))
    sent = [(p["token"], p["_idempotency_key"]) for p in receiver.received]
    phone_key = f"notification-{notification_id}-{hashlib.sha256(b'ada-phone').hexdigest()[:16]}"
    tablet_key = f"notification-{notification_id}-{hashlib.sha256(b'ada-tablet').hexdigest()[:16]}"
    # The phone's push went twice under one key (a receiver honouring it delivers it once);
    # whether the tablet came before the kill depends on the devices' order: once, its own key.
    assert sent.count(("ada-phone", phone_key)) == 2, sent
    assert sent.count(("ada-tablet", tablet_key)) == 1, sent
    assert len(sent) == 3, sent
    assert stack.primary.psql("SELECT pushed_at IS NOT NULL FROM notifications") == "t"


async def test_read_one_read_all_and_the_unread_filter(client: httpx.AsyncClient, stack: LocalStack) -> None:
    ada_id, ada = await sign_up(client, "ada")
    _, bob = await sign_up(client, "bob")
    assert stack.primary is not None
    stack.primary.psql(
        "INSERT INTO notifications (user_id, type, title, body) VALUES"
        f" ({ada_id}, 'system', 'One', 'first'), ({ada_id}, 'system', 'Two', 'second')"
    )
    stack.wait_for_replicas()
    first_id = (await client.get("/api/notifications", headers=ada)).json()["items"][-1]["id"]

    not_mine = await client.post(f"/api/notifications/{first_id}/read", headers=bob)
    read = await client.post(f"/api/notifications/{first_id}/read", headers=ada)
    stack.wait_for_replicas()
    unread = (await client.get("/api/notifications", params={"unread": True}, headers=ada)).json()
    all_read = await client.post("/api/notifications/read-all", headers=ada)

    assert not_mine.status_code == 404
    assert read.json()["read_at"] is not None
    assert [n["title"] for n in unread["items"]] == ["Two"]
    assert all_read.json() == {"marked_read": 1}


async def test_follow_rules(client: httpx.AsyncClient, stack: LocalStack) -> None:
    ada_id, ada = await sign_up(client, "ada")
    stack.wait_for_replicas()

    myself = await client.post(f"/api/users/{ada_id}/follow", headers=ada)
    nobody = await client.post("/api/users/999999/follow", headers=ada)
    anonymous = await client.post(f"/api/users/{ada_id}/follow")

    assert myself.status_code == 400
    assert myself.json() == {"detail": "You cannot follow yourself.", "code": "bad_request"}
    assert nobody.status_code == 404
    assert anonymous.status_code == 401


def test_webhook_provider_sorts_answers(receiver: PushReceiver) -> None:
    settings = get_settings()
    targets = [Target("good-token-1", "web")]
    with httpx.Client(timeout=5) as client:
        provider = WebhookProvider(settings, client)
        receiver.status_for = lambda payload: 503
        with pytest.raises(TransientTaskError, match="503"):
            provider.send(targets, Push("t", "b"), set())
        receiver.status_for = lambda payload: 400
        with pytest.raises(PermanentTaskError, match="400"):
            provider.send(targets, Push("t", "b"), set())
        receiver.status_for = lambda payload: 404
        with pytest.raises(PermanentTaskError, match="404"):
            provider.send(targets, Push("t", "b"), set())
        receiver.status_for = lambda payload: 410
        assert provider.send(targets, Push("t", "b"), set()) == {"good-token-1"}
        # A failure part-way leaves word of the devices that had the push.
        receiver.status_for = lambda payload: 503 if payload["token"] == "third" else 200
        three = [Target("first", "web"), Target("second", "web"), Target("third", "web")]
        reached: set[str] = set()
        with pytest.raises(TransientTaskError, match="503"):
            provider.send(three, Push("t", "b"), reached)
        assert reached == {"first", "second"}


def test_onesignal_provider_reports_invalid_player_ids(receiver: PushReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUSH_PROVIDER", "onesignal")
    monkeypatch.setenv("ONESIGNAL_API_URL", f"http://127.0.0.1:{receiver.server_port}/api/v1")
    monkeypatch.setenv("ONESIGNAL_APP_ID", "app-123")
    monkeypatch.setenv("ONESIGNAL_API_KEY", "rest-key")
    get_settings.cache_clear()
    receiver.reply = {"id": "n1", "errors": {"invalid_player_ids": ["gone-player"]}}

    with httpx.Client(timeout=5) as client:
        reached: set[str] = set()
        invalid = OneSignalProvider(get_settings(), client).send(
            [Target("live-player", "ios"), Target("gone-player", "android")], Push("Hi", "There", {"k": "v"}), reached
        )

    assert invalid == {"gone-player"}
    assert reached == {"live-player"}
    [request] = receiver.received
    assert request["app_id"] == "app-123"
    assert request["include_player_ids"] == ["live-player", "gone-player"]
    assert request["headings"] == {"en": "Hi"}
    assert request["_authorization"] == "Basic rest-key"
    assert "idempotency_key" not in request  # a push that names no notification has no key

    # A notification's push carries one UUID per set of devices, the same on every attempt.
    push = Push("Hi", "There", key="notification-7")
    targets = [Target("live-player", "ios"), Target("other-player", "android")]
    with httpx.Client(timeout=5) as client:
        provider = OneSignalProvider(get_settings(), client)
        provider.send(targets, push, set())
        provider.send(list(reversed(targets)), push, set())
        provider.send(targets[:1], push, set())
    keys = [r["idempotency_key"] for r in receiver.received[1:]]
    assert keys[0] == keys[1] != keys[2]
    assert all(uuid.UUID(key) for key in keys)


def test_fcm_provider_mints_a_token_and_speaks_http_v1(
    receiver: PushReceiver, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from backend_app.notifications.push import FcmProvider

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    base = f"http://127.0.0.1:{receiver.server_port}"
    credentials = tmp_path / "service-account.json"
    credentials.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "jobs-test",
                "private_key_id": "k1",
                "private_key": pem,
                "client_email": "push@jobs-test.iam.gserviceaccount.com",
                "client_id": "1",
                "token_uri": f"{base}/token",
            }
        )
    )
    monkeypatch.setenv("PUSH_PROVIDER", "fcm")
    monkeypatch.setenv("FCM_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("FCM_API_URL", base)
    get_settings.cache_clear()

    def answer(payload: dict) -> int:
        if payload["_path"] == "/token":
            receiver.reply = {"access_token": "ya29.test-token", "expires_in": 3600, "token_type": "Bearer"}
            return 200
        if payload["message"]["token"] == "stale-token":
            receiver.reply = {"error": {"code": 404, "status": "NOT_FOUND", "details": [{"errorCode": "UNREGISTERED"}]}}
            return 404
        receiver.reply = {"name": "projects/jobs-test/messages/1"}
        return 200

    receiver.status_for = answer
    with httpx.Client(timeout=5) as client:
        reached: set[str] = set()
        invalid = FcmProvider(get_settings(), client).send(
            [Target("live-token", "android"), Target("stale-token", "ios")],
            Push("Hi", "There", {"post_id": 7}),
            reached,
        )

    assert invalid == {"stale-token"}
    assert reached == {"live-token"}
    token_request, *sends = receiver.received
    assert token_request["_path"] == "/token"
    assert token_request["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    assert [s["_path"] for s in sends] == ["/v1/projects/jobs-test/messages:send"] * 2
    assert sends[0]["_authorization"] == "Bearer ya29.test-token"
    assert sends[0]["message"] == {
        "token": "live-token",
        "notification": {"title": "Hi", "body": "There"},
        "data": {"post_id": "7"},
    }


async def test_a_push_published_again_after_redis_lost_its_job_skips_the_devices_already_reached(
    stack: LocalStack, receiver: PushReceiver, make_user: Callable[..., tuple[int, str]], tmp_path: Path
) -> None:
    assert stack.primary is not None
    assert stack.redis is not None
    ada_id, _ = make_user("ada")
    bob_id, _ = make_user("bob")
    give_phone_and_tablet(stack, ada_id)
    tablet_answers = iter([503])  # the tablet's first push fails transiently, then 200s
    receiver.status_for = lambda payload: next(tablet_answers, 200) if payload["token"] == "ada-tablet" else 200
    kwargs = {"liker_id": bob_id, "liker_name": "Bob", "post_owner_id": ada_id, "post_id": 1}
    # The first attempt reaches the phone, fails on the tablet, and waits for a retry...
    job = rq_app.publish("notifications", LIKE_JOB, kwargs=kwargs, job_id="like-task")
    worker = batch_worker(tmp_path).start()
    try:
        await wait_until(lambda: job.get_status(refresh=True) == "scheduled", what="the retry to be scheduled")
    finally:
        worker.stop()
    # ...which Redis then loses with its data (the job's meta with it); the relay publishes
    # the task again under the same id.
    stack.redis.stop()
    stack.redis.start()
    again = rq_app.publish("notifications", LIKE_JOB, kwargs=kwargs, job_id="like-task")
    worker = batch_worker(tmp_path).start()
    try:
        await wait_until(lambda: again.get_status(refresh=True) == "finished", what="the task published again")
    finally:
        worker.stop()

    # The phone once: the devices reached are kept with the notification, not only in Redis.
    assert [p["token"] for p in receiver.received] == ["ada-phone", "ada-tablet", "ada-tablet"]
    assert stack.primary.psql("SELECT count(*), bool_and(pushed_at IS NOT NULL) FROM notifications") == "1|t"
    assert stack.primary.psql("SELECT status FROM task_records") == "succeeded"

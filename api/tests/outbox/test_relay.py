"""The relay moves outbox rows to Celery and RQ; nothing is lost when Redis or the relay dies."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import httpx
import pytest
from celery.exceptions import BackendError, NotRegistered, QueueNotFound
from kombu import exceptions as kombu_errors
from redis import exceptions as redis_errors

from backend_app.core.config import Settings
from backend_app.outbox.relay import is_broker_error, is_permanent_publish_error
from backend_app.worker import rq_app
from devtools.devstack import LocalStack
from tests.conftest import query
from tests.metrics.scrape import shared_exposition, values
from tests.processes import Worker, relay, wait_until


def all_succeeded(stack: LocalStack, expected: int) -> bool:
    return query(stack, "SELECT count(*) FROM task_records WHERE status = 'succeeded'") == str(expected)


def broker_failures() -> float:
    failures = values(shared_exposition(rq_app.get_redis()), "jobplatform_outbox_publish_failures_total")
    return sum(count for labels, count in failures.items() if ("reason", "broker") in labels)


def published_counts(relay_worker: Worker) -> int:
    lines = [line for line in relay_worker.output().splitlines() if "published " in line and "since start" in line]
    return sum(int(line.split("published ")[1].split(" ")[0]) for line in lines)


async def test_tasks_reach_celery_and_rq_workers_and_succeed(
    probe_client: httpx.AsyncClient,
    stack: LocalStack,
    relay_process: Worker,
    celery_process: Worker,
    rq_process: Worker,
) -> None:
    celery_task = (await probe_client.post("/probe/tasks", json={"backend": "celery", "key": "c1"})).json()
    rq_task = (await probe_client.post("/probe/tasks", json={"backend": "rq", "key": "r1"})).json()

    await wait_until(lambda: all_succeeded(stack, 2), what="both tasks to succeed")

    assert query(stack, "SELECT string_agg(key, ',' ORDER BY key) FROM test_task_effects") == "c1,r1"
    assert query(stack, f"SELECT attempts FROM task_records WHERE id = '{celery_task['task_id']}'") == "1"
    assert query(stack, f"SELECT attempts FROM task_records WHERE id = '{rq_task['task_id']}'") == "1"
    assert query(stack, "SELECT count(*) FROM outbox_messages WHERE sent_at IS NULL") == "0"
    # The relay logs its progress; it may publish both in one batch or in two.
    assert published_counts(relay_process) == 2


async def test_workers_reading_from_replicas_see_the_write_that_queued_them(
    probe_client: httpx.AsyncClient,
    stack: LocalStack,
    relay_process: Worker,
    celery_process: Worker,
    rq_process: Worker,
) -> None:
    # The replicas stop replaying: only the primary has the task records these writes make.
    for replica in stack.replicas:
        replica.psql("SELECT pg_wal_replay_pause()")
    for backend in ("celery", "rq"):
        response = await probe_client.post("/probe/tasks", json={"backend": backend, "key": backend, "read_back": True})
        assert response.status_code == 201

    await wait_until(lambda: all_succeeded(stack, 2), what="both tasks to succeed")

    # Each task read its own record through a read session, placed by the message's position.
    assert query(stack, "SELECT string_agg(key, ',') FROM test_task_effects") == "seen,seen"
    assert stack.replicas[0].psql("SELECT count(*) FROM task_records") == "0"


async def test_writes_succeed_while_redis_is_down_and_every_task_runs_once_after(
    probe_client: httpx.AsyncClient,
    stack: LocalStack,
    relay_process: Worker,
    celery_process: Worker,
    rq_process: Worker,
) -> None:
    assert stack.redis is not None
    failures_before = broker_failures()
    stack.redis.stop()
    keys = [f"down-{n}" for n in range(10)]
    for n, key in enumerate(keys):
        response = await probe_client.post("/probe/tasks", json={"backend": "celery" if n % 2 else "rq", "key": key})
        assert response.status_code == 201

    await wait_until(lambda: "broker unavailable" in relay_process.output(), what="the relay to notice Redis is down")
    assert query(stack, "SELECT count(*) FROM task_records WHERE status = 'pending'") == "10"

    stack.redis.start()
    try:
        await wait_until(
            lambda: all_succeeded(stack, 10), seconds=90, what="all 10 tasks to succeed after Redis returned"
        )
    except AssertionError as timeout:
        statuses = query(stack, "SELECT string_agg(status || ':' || name, ', ') FROM task_records")
        logs = "\n".join(f"--- {w.name}\n{w.output()[-3000:]}" for w in (relay_process, celery_process, rq_process))
        raise AssertionError(f"{timeout}\nrecords: {statuses}\n{logs}") from None

    assert query(stack, "SELECT count(*) FROM test_task_effects") == "10"
    assert query(stack, "SELECT count(*) FROM test_task_runs") == "10", "a task ran more than once"
    # The failed publishes were counted while Redis was away, and reached it once it was back.
    assert broker_failures() > failures_before


async def test_relay_killed_mid_publish_loses_nothing_and_effects_happen_once(
    probe_client: httpx.AsyncClient,
    stack: LocalStack,
    tmp_path: Path,
    test_task_tables: None,
    celery_process: Worker,
    rq_process: Worker,
) -> None:
    assert stack.redis is not None
    first_relay = relay(tmp_path, "relay-1").start()
    # Pause Redis so the relay blocks inside a publish while holding its claimed rows.
    with socket.create_connection(("127.0.0.1", stack.redis.port)) as redis_socket:
        redis_socket.sendall(b"CLIENT PAUSE 3000 ALL\r\n")
        assert redis_socket.recv(64).startswith(b"+OK")
        for n in range(6):
            backend = "celery" if n % 2 else "rq"
            assert (
                await probe_client.post("/probe/tasks", json={"backend": backend, "key": f"k{n}"})
            ).status_code == 201
        await asyncio.sleep(1)
        first_relay.kill()
        assert query(stack, "SELECT count(*) FROM outbox_messages WHERE sent_at IS NOT NULL") == "0"

    second_relay = relay(tmp_path, "relay-2").start()
    try:
        await wait_until(lambda: all_succeeded(stack, 6), seconds=60, what="all 6 tasks to succeed")
        await asyncio.sleep(1)  # let any duplicate delivery arrive before counting effects
    finally:
        second_relay.stop()

    assert query(stack, "SELECT count(*) FROM test_task_effects") == "6"
    assert query(stack, "SELECT count(DISTINCT task_id) FROM test_task_runs") == "6"
    assert query(stack, "SELECT count(*) FROM outbox_messages WHERE sent_at IS NULL") == "0"


async def test_two_relays_publish_each_row_once(
    probe_client: httpx.AsyncClient, stack: LocalStack, tmp_path: Path, test_task_tables: None, rq_process: Worker
) -> None:
    relays = [relay(tmp_path, "relay-a").start(), relay(tmp_path, "relay-b").start()]
    try:
        for n in range(40):
            assert (await probe_client.post("/probe/tasks", json={"backend": "rq", "key": f"t{n}"})).status_code == 201
        await wait_until(lambda: all_succeeded(stack, 40), seconds=90, what="all 40 tasks to succeed")
    finally:
        for process in relays:
            process.stop()

    published = [published_counts(p) for p in relays]
    assert sum(published) == 40, published
    assert query(stack, "SELECT count(*) FROM test_task_runs") == "40"


async def test_an_unpublishable_row_fails_its_task_and_the_rest_still_flow(
    probe_client: httpx.AsyncClient, stack: LocalStack, relay_process: Worker, rq_process: Worker
) -> None:
    # A row the relay can never publish (a queue that no longer exists), recorded before a good one.
    query(
        stack,
        "WITH t AS (INSERT INTO task_records (id, backend, queue, name, payload, status)"
        " VALUES ('orphan', 'rq', 'retired_queue', 'x.y', '{}', 'pending') RETURNING id)"
        " INSERT INTO outbox_messages (task_id) SELECT id FROM t",
    )
    good = (await probe_client.post("/probe/tasks", json={"backend": "rq", "key": "after-orphan"})).json()

    await wait_until(
        lambda: query(stack, f"SELECT status FROM task_records WHERE id = '{good['task_id']}'") == "succeeded"
    )

    assert query(stack, "SELECT status FROM task_records WHERE id = 'orphan'") == "failed"
    assert "could not publish: KeyError" in query(stack, "SELECT last_error FROM task_records WHERE id = 'orphan'")
    assert query(stack, "SELECT count(*) FROM outbox_messages WHERE sent_at IS NULL") == "0"


def _raised_from(error: BaseException, cause: BaseException) -> BaseException:
    try:
        try:
            raise cause
        except BaseException as inner:
            raise error from inner
    except BaseException as outer:
        return outer


@pytest.mark.parametrize(
    "error",
    [
        kombu_errors.OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused."),
        redis_errors.ConnectionError("Connection closed by server."),
        redis_errors.TimeoutError("Timeout reading from socket"),
        redis_errors.BusyLoadingError("Redis is loading the dataset in memory"),
        ConnectionRefusedError(111, "Connection refused"),
        BackendError("result store unreachable"),
        # What Celery's Redis result backend raised after ~20 s without Redis: the task it was
        # publishing was failed for good. A wrapped outage is still an outage.
        _raised_from(
            RuntimeError("Retry limit exceeded while trying to reconnect to the Celery result store backend."),
            redis_errors.ConnectionError("Error 111 connecting"),
        ),
        _raised_from(KeyError("channel"), redis_errors.ConnectionError("stale socket")),
        # Not known to be permanent, so kept and retried rather than failed.
        RuntimeError("something unexpected"),
    ],
)
def test_outages_and_unknown_errors_are_never_permanent(error: BaseException) -> None:
    assert not is_permanent_publish_error(error)


@pytest.mark.parametrize(
    "error",
    [
        KeyError("retired_queue"),  # no such RQ queue
        QueueNotFound("retired_queue"),
        NotRegistered("no.such.task"),
        kombu_errors.EncodeError("Object of type bytes is not JSON serializable"),
        kombu_errors.ContentDisallowed("pickle"),
    ],
)
def test_unknown_queues_and_unserialisable_arguments_fail_the_task(error: BaseException) -> None:
    assert is_permanent_publish_error(error)
    assert not is_broker_error(error)


async def test_an_outage_reported_as_another_error_postpones_the_row_and_keeps_the_task(
    probe_client: httpx.AsyncClient, stack: LocalStack, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backend_app.core.read_replica import get_database_router
    from backend_app.outbox import relay as relay_module

    task = (await probe_client.post("/probe/tasks", json={"backend": "celery", "key": "reset"})).json()

    def publish_into_an_outage(message: object, db_position: str | None = None) -> None:
        # How Celery's Redis result backend reported an outage longer than ~20 s.
        try:
            raise redis_errors.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        except redis_errors.ConnectionError as lost:
            raise RuntimeError("Retry limit exceeded while trying to reconnect to the Celery result store") from lost

    monkeypatch.setattr(relay_module, "publish", publish_into_an_outage)
    assert await relay_module.Relay(settings, get_database_router()).publish_batch() == 0

    assert query(stack, f"SELECT status FROM task_records WHERE id = '{task['task_id']}'") == "pending"
    row = query(stack, "SELECT publish_attempts || ' ' || (sent_at IS NULL) || ' ' || last_error FROM outbox_messages")
    assert row.startswith("1 true RuntimeError: Retry limit exceeded"), row

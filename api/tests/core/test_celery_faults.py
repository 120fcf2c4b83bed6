"""Long Redis faults against the Procfile's own processes: nothing is lost, nothing needs a restart.

An outage here lasts longer than the ~20 s after which the relay's Celery client used to give
up on its Redis result backend and fail the task it was publishing.
"""

from __future__ import annotations

import asyncio
import time

import httpx

from devtools.devstack import LocalStack
from tests.conftest import query
from tests.processes import Worker, wait_until

OUTAGE_SECONDS = 30
# kombu retries the worker's broker connection every 2, 4, ... up to 30 s: once Redis is
# back, the worker consumes again within that interval (plus start-up of its consumer).
WORKER_RECONNECT_SECONDS = 45


def status(stack: LocalStack, task_id: str) -> str:
    return query(stack, f"SELECT status FROM task_records WHERE id = '{task_id}'")


def logs(*workers: Worker) -> str:
    return "\n".join(f"--- {worker.name}\n{worker.output()[-4000:]}" for worker in workers)


async def test_a_task_recorded_during_a_long_redis_outage_runs_once_after_it(
    probe_client: httpx.AsyncClient, stack: LocalStack, relay_process: Worker, celery_process: Worker
) -> None:
    assert stack.redis is not None
    # One task first, so the relay's Celery client has published (and any result listener
    # it would open is open) before Redis goes away.
    before = (await probe_client.post("/probe/tasks", json={"backend": "celery", "key": "before"})).json()
    await wait_until(lambda: status(stack, before["task_id"]) == "succeeded", what="the first task")

    stack.redis.stop()
    stopped = time.monotonic()
    during = (await probe_client.post("/probe/tasks", json={"backend": "celery", "key": "during"})).json()
    await wait_until(lambda: "broker unavailable" in relay_process.output(), what="the relay to notice Redis is down")
    await asyncio.sleep(OUTAGE_SECONDS - (time.monotonic() - stopped))
    assert status(stack, during["task_id"]) == "pending", logs(relay_process)
    assert query(stack, "SELECT count(*) FROM outbox_messages WHERE sent_at IS NULL") == "1"
    attempts = int(query(stack, "SELECT publish_attempts FROM outbox_messages WHERE sent_at IS NULL"))
    assert attempts >= 5, "the relay should keep trying all along"

    stack.redis.start()
    back = time.monotonic()
    try:
        await wait_until(
            lambda: status(stack, during["task_id"]) == "succeeded",
            seconds=WORKER_RECONNECT_SECONDS,
            what="the task recorded during the outage to succeed",
        )
    except AssertionError as timeout:
        raise AssertionError(f"{timeout}\n{logs(relay_process, celery_process)}") from None
    print(f"task succeeded {time.monotonic() - back:.1f}s after Redis returned from a {OUTAGE_SECONDS}s outage")

    await asyncio.sleep(1)  # a duplicate delivery would show up by now
    assert query(stack, "SELECT count(*) FROM test_task_runs WHERE key = 'during'") == "1"
    assert query(stack, "SELECT count(*) FROM test_task_effects WHERE key = 'during'") == "1"
    # Nobody restarted anything: the same processes did the work, and said nothing alarming.
    for worker in (relay_process, celery_process):
        assert worker.process is not None
        assert worker.process.poll() is None, f"{worker.name} exited"
        assert "Traceback" not in worker.output(), logs(worker)
        assert "must be restarted" not in worker.output()


async def test_the_worker_consumes_again_after_redis_restarts_empty(
    probe_client: httpx.AsyncClient, stack: LocalStack, relay_process: Worker, celery_process: Worker
) -> None:
    assert stack.redis is not None
    first = (await probe_client.post("/probe/tasks", json={"backend": "celery", "key": "first"})).json()
    await wait_until(lambda: status(stack, first["task_id"]) == "succeeded", what="the first task")

    # A crash without persistence: the server comes back on the same port with nothing in it
    # (no queues, no bindings, no unacked messages), after long enough that every client noticed.
    stack.redis.stop()
    await asyncio.sleep(25)
    stack.redis.start()
    stack.redis.flushall()
    back = time.monotonic()

    after = (await probe_client.post("/probe/tasks", json={"backend": "celery", "key": "after"})).json()
    try:
        await wait_until(
            lambda: status(stack, after["task_id"]) == "succeeded",
            seconds=WORKER_RECONNECT_SECONDS,
            what="a task recorded after Redis came back empty to succeed",
        )
    except AssertionError as timeout:
        raise AssertionError(f"{timeout}\n{logs(relay_process, celery_process)}") from None
    print(f"new task succeeded {time.monotonic() - back:.1f}s after an empty Redis came back")

    assert query(stack, "SELECT count(*) FROM test_task_runs WHERE key = 'after'") == "1"
    assert celery_process.process is not None
    assert celery_process.process.poll() is None
    # Gossip used to log an AttributeError traceback while the consumer restarted.
    assert "Traceback" not in celery_process.output(), logs(celery_process)


async def test_the_worker_outlives_redis_dropping_while_it_holds_messages(
    stack: LocalStack, celery_process: Worker
) -> None:
    from backend_app.core.celery_app import celery_app

    assert stack.redis is not None
    # Messages the worker holds unacknowledged: retries waiting out their countdown.
    for n in range(3):
        celery_app.send_task("backend_app.core.celery_tasks.ping", task_id=f"held-{n}", queue="emails", countdown=300)
    await wait_until(lambda: celery_process.output().count("received") >= 3, what="the worker to hold them")

    stack.redis.stop()
    await asyncio.sleep(5)
    stack.redis.start()
    await asyncio.sleep(5)

    assert celery_process.process is not None
    assert celery_process.process.poll() is None, celery_process.output()[-3000:]
    assert "Unrecoverable error" not in celery_process.output()

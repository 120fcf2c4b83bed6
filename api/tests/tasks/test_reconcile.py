"""Redis losing its data loses no work: the relay publishes again what the task records say is
waiting but Redis no longer holds (backend_app/tasks/reconcile.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from backend_app.core.rq_app import get_redis
from backend_app.devstack import LocalStack
from tests.conftest import query
from tests.processes import Worker, celery_worker, rq_worker, wait_until
from tests.tasks.test_tracking import record, status_of


@pytest.mark.parametrize("backend", ["celery", "rq"])
async def test_a_queued_task_whose_message_redis_lost_is_published_again_and_runs_once(
    probe_client: httpx.AsyncClient, stack: LocalStack, tmp_path: Path, relay_process: Worker, backend: str
) -> None:
    # No worker yet: the task is published and waits in Redis.
    task_id = await record(probe_client, backend=backend, key="survivor")
    await wait_until(lambda: status_of(stack, task_id) == "queued", what="the task published")
    assert stack.redis is not None
    stack.redis.stop()
    stack.redis.start()  # the test Redis keeps nothing on disk: the message is gone
    assert get_redis().dbsize() == 0

    worker = (celery_worker if backend == "celery" else rq_worker)(tmp_path).start()
    try:
        await wait_until(
            lambda: status_of(stack, task_id) == "succeeded", seconds=60, what="the lost task published again and run"
        )
    finally:
        worker.stop()

    assert query(stack, "SELECT count(*) FROM test_task_effects") == "1"
    assert "published again" in relay_process.output()
    assert query(stack, f"SELECT count(*) FROM outbox_messages WHERE task_id = '{task_id}'") == "2"


async def test_a_task_whose_message_is_still_in_redis_is_left_alone(
    probe_client: httpx.AsyncClient, stack: LocalStack, relay_process: Worker
) -> None:
    celery_task = await record(probe_client, backend="celery", key="waiting-celery")
    rq_task = await record(probe_client, backend="rq", key="waiting-rq")
    await wait_until(
        lambda: status_of(stack, celery_task) == status_of(stack, rq_task) == "queued", what="both published"
    )

    # Several reconcile checks past the grace period (TEST_SETTINGS: grace 3 s, every 0.5 s).
    await asyncio.sleep(6)

    assert query(stack, "SELECT count(*) FROM outbox_messages") == "2"
    assert "published again" not in relay_process.output()

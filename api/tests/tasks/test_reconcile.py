"""Redis losing its data loses no work: the relay publishes again what the task records say is
waiting but Redis no longer holds (backend_app/tasks/reconcile.py)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from backend_app.core.config import Settings
from backend_app.core.read_replica import get_database_router
from backend_app.core.rq_app import get_redis
from backend_app.tasks.reconcile import Reconciler
from devtools.devstack import LocalStack
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


def kombu_message(task_id: str) -> str:
    """A Celery message as kombu's Redis transport stores it in `unacked`."""
    message = {"body": "", "headers": {"id": task_id, "task": "backend_app.core.celery_tasks.ping", "eta": None}}
    return json.dumps([message, "", "emails"])


async def check_twice(settings: Settings) -> list[str]:
    """Two reconcile checks in a row (a loss counts once it is seen twice)."""
    reconciler = Reconciler(settings)
    found: list[str] = []
    for _ in range(2):
        async with get_database_router().write_session() as session:
            found += [candidate.task_id for candidate in await reconciler.check(session, get_redis())]
    return found


async def test_a_message_only_a_dead_celery_worker_holds_is_published_again_and_taken_out_of_unacked(
    app: FastAPI, settings: Settings, stack: LocalStack
) -> None:
    # Started long ago by a worker that died: its copy sits in `unacked` since then, and a
    # live worker's copy (taken just now) of another task must be left alone.
    query(
        stack,
        "INSERT INTO task_records (id, backend, queue, name, payload, status, attempts, started_at, updated_at)"
        " VALUES ('orphaned', 'celery', 'emails', 'backend_app.core.celery_tasks.ping', '{}', 'started', 1,"
        "         now() - interval '1 hour', now() - interval '1 hour'),"
        "        ('running', 'celery', 'emails', 'backend_app.core.celery_tasks.ping', '{}', 'queued', 0,"
        "         NULL, now() - interval '1 hour')",
    )
    redis = get_redis()
    redis.hset("unacked", mapping={"tag-dead": kombu_message("orphaned"), "tag-live": kombu_message("running")})
    redis.zadd("unacked_index", {"tag-dead": time.time() - 3600, "tag-live": time.time()})

    assert await check_twice(settings) == ["orphaned"]

    assert query(stack, "SELECT task_id FROM outbox_messages WHERE sent_at IS NULL") == "orphaned"
    assert query(stack, "SELECT attempts FROM task_records WHERE id = 'orphaned'") == "2"
    assert redis.hkeys("unacked") == [b"tag-live"], "the dead worker's copy must not be handed out again later"


async def test_a_task_whose_message_keeps_vanishing_ends_dead(
    app: FastAPI, settings: Settings, stack: LocalStack
) -> None:
    query(
        stack,
        "INSERT INTO task_records (id, backend, queue, name, payload, status, attempts, updated_at)"
        f" VALUES ('vanishing', 'rq', 'notifications', 'backend_app.core.rq_tasks.ping_job', '{{}}', 'queued',"
        f"         {settings.task_max_attempts}, now() - interval '1 hour')",
    )

    assert await check_twice(settings) == ["vanishing"]

    assert query(stack, "SELECT status FROM task_records WHERE id = 'vanishing'") == "dead"
    assert query(stack, "SELECT count(*) FROM outbox_messages") == "0"


async def test_a_started_task_whose_job_redis_lost_is_published_again_once_no_worker_wrote_it_back(
    app: FastAPI, settings: Settings, stack: LocalStack
) -> None:
    # A video job started 10 s ago (past the grace, far within its 30-minute limit) by a
    # worker that was then killed, and Redis lost its data: nothing in Redis says it runs.
    query(
        stack,
        "INSERT INTO task_records (id, backend, queue, name, payload, status, attempts, started_at, updated_at)"
        " VALUES ('stranded', 'rq', 'video_processing', 'backend_app.core.rq_tasks.ping_job', '{}', 'started', 1,"
        "         now() - interval '10 seconds', now() - interval '10 seconds')",
    )
    reconciler = Reconciler(settings)
    reconciler.running_task_confirm_seconds = 2.0  # two heartbeats of a running job (60 s deployed)

    async def check() -> list[str]:
        async with get_database_router().write_session() as session:
            return [candidate.task_id for candidate in await reconciler.check(session, get_redis())]

    # A live worker would write its running job back within two heartbeats: not yet lost.
    assert await check() == []
    assert await check() == []
    assert query(stack, "SELECT count(*) FROM outbox_messages") == "0"

    await asyncio.sleep(2.0)
    assert await check() == ["stranded"]
    assert query(stack, "SELECT task_id FROM outbox_messages WHERE sent_at IS NULL") == "stranded"
    assert query(stack, "SELECT attempts FROM task_records WHERE id = 'stranded'") == "2"


async def test_a_started_task_whose_job_is_running_in_redis_is_left_alone(
    app: FastAPI, settings: Settings, stack: LocalStack
) -> None:
    query(
        stack,
        "INSERT INTO task_records (id, backend, queue, name, payload, status, attempts, started_at, updated_at)"
        " VALUES ('transcoding', 'rq', 'video_processing', 'backend_app.core.rq_tasks.ping_job', '{}', 'started', 1,"
        "         now() - interval '10 minutes', now() - interval '10 minutes')",
    )
    get_redis().hset("rq:job:transcoding", mapping={"status": "started"})
    reconciler = Reconciler(settings)
    reconciler.running_task_confirm_seconds = 0.0

    for _ in range(3):
        async with get_database_router().write_session() as session:
            assert await reconciler.check(session, get_redis()) == []
    assert query(stack, "SELECT count(*) FROM outbox_messages") == "0"

"""/health/queues against real Redis, PostgreSQL and worker processes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from devtools.devstack import LocalStack
from tests.conftest import PROBE
from tests.processes import Worker, celery_worker, rq_pool_size


async def queues_until(
    client: httpx.AsyncClient, accept: Callable[[dict], bool], seconds: float = 30
) -> httpx.Response:
    deadline = time.monotonic() + seconds
    while True:
        response = await client.get("/health/queues", headers=PROBE)
        if accept(response.json()):
            return response
        if time.monotonic() > deadline:
            raise AssertionError(f"/health/queues never matched; last: {response.json()}")
        await asyncio.sleep(0.25)


def all_canaries_consumed(report: dict) -> bool:
    return all(queue.get("canary", {}).get("consuming") is True for queue in report.get("queues", {}).values())


async def test_healthy_with_workers_consuming_every_queue(
    client: httpx.AsyncClient, stack: LocalStack, relay_process: Worker, celery_process: Worker, rq_process: Worker
) -> None:
    # The first call sends the canaries; a later one sees them done.
    response = await queues_until(
        client,
        lambda r: (
            all_canaries_consumed(r)
            and all(q["canary"]["last_round_trip_ms"] is not None for q in r["queues"].values())
        ),
    )

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy", body["problems"]
    assert body["redis"]["reachable"] is True
    assert body["redis"]["round_trip_ms"] >= 0
    assert body["workers"]["celery"]["alive"] == 1
    # The Procfile's RQ processes: the pool's workers and the video worker.
    assert body["workers"]["rq"]["registered"] == rq_pool_size() + 1
    assert set(body["queues"]) == {"emails", "notifications", "analytics", "video_processing"}
    for queue in body["queues"].values():
        assert {"depth", "oldest_waiting_seconds", "started", "failed", "dead", "canary"} <= set(queue)
        assert queue["missing_from_redis"] == 0
    for name in ("notifications", "analytics", "video_processing"):
        assert body["queues"][name]["scheduler"] is not None, f"nobody schedules {name}'s retries"
        assert body["queues"][name]["overdue_scheduled"] == 0
    assert body["outbox"] == {"reachable": True, "backlog": 0, "oldest_pending_seconds": None}
    assert stack.redis is not None
    assert "password" not in response.text


async def test_stopped_celery_worker_is_reported(
    client: httpx.AsyncClient, stack: LocalStack, tmp_path: Path, rq_process: Worker, test_task_tables: None
) -> None:
    worker = celery_worker(tmp_path).start()
    await queues_until(client, lambda r: r.get("workers", {}).get("celery", {}).get("alive") == 1)
    worker.stop()

    response = await queues_until(client, lambda r: r["workers"]["celery"]["alive"] == 0)

    body = response.json()
    assert response.status_code == 200
    assert body["status"] == "degraded"
    assert "no celery worker answered" in body["problems"]


async def test_queue_nobody_consumes_fails_its_canary(
    client: httpx.AsyncClient, stack: LocalStack, rq_process: Worker
) -> None:
    response = await queues_until(client, lambda r: r["queues"]["emails"]["canary"]["consuming"] is False, seconds=20)

    body = response.json()
    assert body["status"] == "degraded"
    assert "queue emails: canary not consumed within 5s" in body["problems"]
    assert body["queues"]["emails"]["depth"] >= 1
    assert body["queues"]["notifications"]["canary"]["consuming"] is True


async def test_stopped_redis_is_degraded_while_the_outbox_still_accepts_work(
    client: httpx.AsyncClient, stack: LocalStack
) -> None:
    assert stack.redis is not None
    stack.redis.stop()

    response = await client.get("/health/queues", headers=PROBE)

    body = response.json()
    assert response.status_code == 200
    assert body["status"] == "degraded"
    assert body["redis"]["reachable"] is False
    assert body["outbox"]["reachable"] is True
    assert "redis unreachable: tasks wait in the outbox" in body["problems"]


async def test_redis_and_primary_down_is_unhealthy_503(client: httpx.AsyncClient, stack: LocalStack) -> None:
    assert stack.redis is not None
    assert stack.primary is not None
    stack.redis.stop()
    stack.primary.stop()

    response = await client.get("/health/queues", headers=PROBE)

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "10"
    body = response.json()
    assert body["status"] == "unhealthy"
    assert stack.primary.password not in response.text


async def test_overdue_retries_without_a_scheduler_are_reported(client: httpx.AsyncClient, stack: LocalStack) -> None:
    from datetime import UTC, datetime, timedelta

    from backend_app.core import rq_app

    # A retry that was due a minute ago and that no scheduler moved (no RQ process runs).
    rq_app.get_queue("video_processing").enqueue_at(
        datetime.now(UTC) - timedelta(minutes=1), "backend_app.core.rq_tasks.ping_job"
    )

    body = (await client.get("/health/queues", headers=PROBE)).json()

    video = body["queues"]["video_processing"]
    assert (video["scheduler"], video["overdue_scheduled"]) == (None, 1)
    assert "queue video_processing: 1 scheduled retries overdue" in body["problems"]
    assert (
        "queue video_processing: no process holds its RQ scheduler lock (scheduled retries do not move)"
        in body["problems"]
    )


async def test_tasks_recorded_as_waiting_but_missing_from_redis_are_reported(
    client: httpx.AsyncClient, stack: LocalStack
) -> None:
    assert stack.primary is not None
    # Queued long ago (past TASK_RECONCILE_GRACE) and Redis holds no message for either.
    stack.primary.psql(
        "INSERT INTO task_records (id, backend, queue, name, payload, status, updated_at) VALUES"
        " ('lost-email', 'celery', 'emails', 'backend_app.core.celery_tasks.ping', '{}', 'queued',"
        "  now() - interval '1 minute'),"
        " ('lost-push', 'rq', 'notifications', 'backend_app.core.rq_tasks.ping_job', '{}', 'retrying',"
        "  now() - interval '1 minute')"
    )

    body = (await client.get("/health/queues", headers=PROBE)).json()

    assert body["queues"]["emails"]["missing_from_redis"] == 1
    assert body["queues"]["notifications"]["missing_from_redis"] == 1
    assert body["queues"]["analytics"]["missing_from_redis"] == 0
    assert (
        "queue emails: 1 task(s) recorded as waiting or running are missing from Redis (being published again)"
        in body["problems"]
    )


async def test_a_job_abandoned_by_a_dead_worker_is_counted_and_left_to_the_workers(
    client: httpx.AsyncClient, stack: LocalStack
) -> None:
    from rq import Callback
    from rq.registry import StartedJobRegistry

    from backend_app.core import rq_app

    # A video job whose worker was killed mid-run a while ago: its started-registry entry
    # has expired and no worker's maintenance has failed it into its retries yet.
    queue = rq_app.get_queue("video_processing")
    job = queue.enqueue_call(
        "backend_app.core.rq_tasks.ping_job", on_failure=Callback(rq_app.FAILURE_CALLBACK), job_id="abandoned"
    )
    redis = rq_app.get_redis()
    redis.lrem(queue.key, 0, job.id)
    job.set_status("started")
    registry = StartedJobRegistry(queue=queue)
    redis.zadd(registry.key, {f"{job.id}:execution-of-a-dead-worker": time.time() - 60})

    response = await client.get("/health/queues", headers=PROBE)

    assert response.status_code == 200, response.text
    # Failing it into its retries (and running its failure callback) is the workers' job.
    assert registry.get_job_count(cleanup=False) == 1
    assert job.get_status(refresh=True) == "started"

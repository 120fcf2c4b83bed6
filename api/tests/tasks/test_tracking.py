"""Task records follow real workers: retries, dead tasks, permanent failures, killed workers."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import httpx
import pytest

from devtools.devstack import LocalStack
from tests.conftest import query
from tests.processes import Worker, celery_worker, rq_video_worker, wait_until


def status_of(stack: LocalStack, task_id: str) -> str:
    return query(stack, f"SELECT status FROM task_records WHERE id = '{task_id}'")


async def record(client: httpx.AsyncClient, **task: object) -> str:
    response = await client.post("/probe/tasks", json=task)
    assert response.status_code == 201, response.text
    return response.json()["task_id"]


async def test_transient_failures_retry_then_succeed(
    probe_client: httpx.AsyncClient, stack: LocalStack, relay_process: Worker, celery_process: Worker
) -> None:
    task_id = await record(probe_client, backend="celery", key="flaky", fail_times=1)

    await wait_until(lambda: status_of(stack, task_id) == "succeeded", seconds=30, what="the retried task")

    assert query(stack, f"SELECT attempts FROM task_records WHERE id = '{task_id}'") == "2"
    assert query(stack, f"SELECT last_error FROM task_records WHERE id = '{task_id}'").startswith(
        "TransientTaskError: flaky: transient failure 1"
    )
    assert query(stack, "SELECT count(*) FROM test_task_effects") == "1"


async def test_celery_task_that_keeps_failing_ends_dead(
    probe_client: httpx.AsyncClient, stack: LocalStack, relay_process: Worker, celery_process: Worker
) -> None:
    task_id = await record(probe_client, backend="celery", key="doomed", fail_times=99)

    await wait_until(lambda: status_of(stack, task_id) == "dead", seconds=30, what="the task to be dead")

    assert query(stack, f"SELECT attempts FROM task_records WHERE id = '{task_id}'") == "3"  # 1 + max_retries 2
    assert query(stack, "SELECT count(*) FROM test_task_effects") == "0"


@pytest.mark.parametrize("backend", ["celery", "rq"])
async def test_permanent_failure_is_failed_without_retrying(
    backend: str,
    probe_client: httpx.AsyncClient,
    stack: LocalStack,
    relay_process: Worker,
    celery_process: Worker,
    rq_process: Worker,
) -> None:
    task_id = await record(probe_client, backend=backend, key="refused", fail="permanent")

    await wait_until(lambda: status_of(stack, task_id) == "failed", seconds=30, what="the task to fail")
    await asyncio.sleep(1.5)

    assert status_of(stack, task_id) == "failed"
    assert query(stack, f"SELECT count(*) FROM test_task_runs WHERE task_id = '{task_id}'") == "1"
    assert "PermanentTaskError: refused: refused for good" in query(
        stack, f"SELECT last_error FROM task_records WHERE id = '{task_id}'"
    )


async def test_celery_worker_killed_mid_task_redelivers_and_the_effect_happens_once(
    probe_client: httpx.AsyncClient, stack: LocalStack, tmp_path: Path, relay_process: Worker, test_task_tables: None
) -> None:
    first = celery_worker(tmp_path, "celery-1").start()
    task_id = await record(probe_client, backend="celery", key="survivor", sleep_after_effect=30)
    await wait_until(
        lambda: query(stack, "SELECT count(*) FROM test_task_effects") == "1", what="the effect before the kill"
    )
    first.kill()  # the whole worker, main process and pool, as when its machine dies
    assert status_of(stack, task_id) == "started"

    second = celery_worker(tmp_path, "celery-2")
    # The redelivered copy sleeps too; the test stops waiting once the second run began (its
    # record is attempt 2 and it has recorded its run, just before its effect and sleep).
    second.start()
    try:
        await wait_until(
            lambda: (
                query(stack, f"SELECT attempts FROM task_records WHERE id = '{task_id}'") == "2"
                and query(stack, f"SELECT count(*) FROM test_task_runs WHERE task_id = '{task_id}'") == "2"
            ),
            seconds=40,
            what="redelivery after the visibility timeout",
        )
    finally:
        second.kill()

    assert query(stack, "SELECT count(*) FROM test_task_effects") == "1"
    assert query(stack, f"SELECT count(*) FROM test_task_runs WHERE task_id = '{task_id}'") == "2"


async def test_rq_work_horse_killed_mid_task_is_retried_and_the_effect_happens_once(
    probe_client: httpx.AsyncClient, stack: LocalStack, tmp_path: Path, relay_process: Worker, test_task_tables: None
) -> None:
    # Only the video worker forks a work horse per job (the pool runs jobs in-process).
    worker = rq_video_worker(tmp_path).start()
    try:
        task_id = await record(probe_client, backend="rq", key="horse", sleep_after_effect=3, queue="video_processing")
        await wait_until(
            lambda: query(stack, "SELECT count(*) FROM test_task_effects") == "1", what="the effect before the kill"
        )
        # The newest child is the work horse running the job (the older one is the scheduler).
        os.kill(worker.children()[-1], signal.SIGKILL)

        # RQ runs no failure callback for a killed work horse: the record stays started
        # until RQ's retry (60 s later on this queue, moved by the video worker's own
        # scheduler) starts it again as attempt 2.
        await wait_until(
            lambda: status_of(stack, task_id) == "succeeded", seconds=100, what="the retry (60s delay) to succeed"
        )
    finally:
        worker.stop()

    assert query(stack, "SELECT count(*) FROM test_task_effects") == "1"
    assert query(stack, f"SELECT count(*) FROM test_task_runs WHERE task_id = '{task_id}'") == "2"
    assert query(stack, f"SELECT attempts FROM task_records WHERE id = '{task_id}'") == "2"


async def test_a_task_redelivered_past_the_attempt_limit_is_dead_not_run_again(
    stack: LocalStack, celery_process: Worker
) -> None:
    from backend_app.core.celery_app import celery_app

    # As if its worker had died ten times while running it.
    query(
        stack,
        "INSERT INTO task_records (id, backend, queue, name, payload, status, attempts)"
        " VALUES ('doomed-forever', 'celery', 'emails', 'tests.record_effect', '{}', 'started', 10)",
    )
    celery_app.send_task("tests.record_effect", kwargs={"key": "x"}, task_id="doomed-forever", queue="emails")

    await wait_until(lambda: status_of(stack, "doomed-forever") == "dead", what="the attempt limit")
    assert (
        query(stack, "SELECT last_error FROM task_records WHERE id = 'doomed-forever'") == "gave up after 10 attempts"
    )
    assert query(stack, "SELECT count(*) FROM test_task_runs WHERE task_id = 'doomed-forever'") == "0"


async def test_tasks_left_started_by_a_vanished_worker_are_swept_to_dead(app: object, stack: LocalStack) -> None:
    from backend_app.tasks.tasks import expire_stalled

    query(
        stack,
        "INSERT INTO task_records (id, backend, queue, name, payload, status, started_at) VALUES"
        " ('stalled', 'rq', 'notifications', 'x.y', '{}', 'started', now() - interval '2 hours'),"
        " ('running', 'rq', 'video_processing', 'x.y', '{}', 'started', now() - interval '40 minutes')",
    )

    expired = await expire_stalled()

    assert expired == ["stalled"]
    assert status_of(stack, "stalled") == "dead"
    assert status_of(stack, "running") == "started", "within twice its queue's 30 min timeout"

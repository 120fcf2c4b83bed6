"""Tasks that exist only for the tests, loaded by the test workers (CELERY_IMPORTS; RQ by path).

Each run is counted in `test_task_runs`; the effect goes to `test_task_effects` keyed by
task id with ON CONFLICT DO NOTHING, which is how a task makes its effect idempotent.
"""

from __future__ import annotations

import time

from celery import current_task
from rq import get_current_job
from sqlalchemy import text

from backend_app.core.celery_app import celery_app
from backend_app.core.read_replica import get_database_router
from backend_app.core.worker_runtime import run_async
from backend_app.tasks.errors import PermanentTaskError, TransientTaskError
from backend_app.worker.tracking import TrackedTask, tracked_job

CREATE_TABLES = """
CREATE TABLE IF NOT EXISTS test_task_runs (task_id text, key text, ran_at timestamptz DEFAULT clock_timestamp());
CREATE TABLE IF NOT EXISTS test_task_effects (task_id text PRIMARY KEY, key text);
"""


async def _record(task_id: str, key: str, *, effect: bool) -> int:
    async with get_database_router().write_session() as session:
        await session.execute(
            text("INSERT INTO test_task_runs (task_id, key) VALUES (:t, :k)"), {"t": task_id, "k": key}
        )
        if effect:
            await session.execute(
                text("INSERT INTO test_task_effects (task_id, key) VALUES (:t, :k) ON CONFLICT DO NOTHING"),
                {"t": task_id, "k": key},
            )
        runs = await session.scalar(text("SELECT count(*) FROM test_task_runs WHERE task_id = :t"), {"t": task_id})
    return int(runs or 0)


async def _mark_effect(task_id: str, key: str) -> None:
    async with get_database_router().write_session() as session:
        await session.execute(
            text("INSERT INTO test_task_effects (task_id, key) VALUES (:t, :k) ON CONFLICT DO NOTHING"),
            {"t": task_id, "k": key},
        )


def _behave(task_id: str, key: str, *, sleep_after_effect: float, fail_times: int, fail: str) -> dict[str, object]:
    runs = run_async(_record(task_id, key, effect=False))
    if fail == "permanent":
        raise PermanentTaskError(f"{key}: refused for good")
    if runs <= fail_times:
        raise TransientTaskError(f"{key}: transient failure {runs}")
    run_async(_mark_effect(task_id, key))
    time.sleep(sleep_after_effect)
    return {"key": key, "runs": runs}


@celery_app.task(base=TrackedTask, name="tests.record_effect", max_retries=2, retry_backoff_max=1)
def record_effect(key: str, sleep_after_effect: float = 0, fail_times: int = 0, fail: str = "") -> dict[str, object]:
    return _behave(
        current_task.request.id, key, sleep_after_effect=sleep_after_effect, fail_times=fail_times, fail=fail
    )


@tracked_job
def record_effect_job(
    key: str, sleep_after_effect: float = 0, fail_times: int = 0, fail: str = ""
) -> dict[str, object]:
    job = get_current_job()
    assert job is not None
    return _behave(job.id, key, sleep_after_effect=sleep_after_effect, fail_times=fail_times, fail=fail)


async def _look_for_own_record(task_id: str) -> str:
    # A replica read: the task's message carries the position of the write that recorded it.
    async with get_database_router().read_session() as session:
        found = await session.scalar(text("SELECT count(*) FROM task_records WHERE id = :t"), {"t": task_id})
    return "seen" if found else "missing"


def _read_back(task_id: str) -> dict[str, object]:
    seen = run_async(_look_for_own_record(task_id))
    run_async(_mark_effect(task_id, seen))
    return {"record": seen}


@celery_app.task(base=TrackedTask, name="tests.read_own_record")
def read_own_record(key: str, **_options: object) -> dict[str, object]:
    return _read_back(current_task.request.id)


@tracked_job
def read_own_record_job(key: str, **_options: object) -> dict[str, object]:
    job = get_current_job()
    assert job is not None
    return _read_back(job.id)


async def _effect_in_a_long_transaction(task_id: str, key: str, seconds: float) -> None:
    async with get_database_router().write_session() as session:
        await session.execute(
            text("INSERT INTO test_task_effects (task_id, key) VALUES (:t, :k) ON CONFLICT DO NOTHING"),
            {"t": task_id, "k": key},
        )
        await session.execute(text("SELECT pg_sleep(:s)"), {"s": seconds})


@tracked_job
def slow_transaction_job(key: str, seconds: float) -> None:
    """Writes its effect in a transaction that stays open `seconds` (longer than its timeout)."""
    job = get_current_job()
    assert job is not None
    run_async(_effect_in_a_long_transaction(job.id, key, seconds))

"""The faster RQ worker classes, started with their documented commands, run tracked jobs."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
from redis.client import Pipeline
from rq import Callback, Retry
from rq.job import Job
from rq.worker import Worker as RQWorker

from backend_app.core import rq_app
from devtools.devstack import LocalStack
from tests.conftest import query
from tests.processes import Worker, rq_worker_of_class, wait_until


def analytics_worker(worker_class: str, log_dir: Path) -> Worker:
    """The documented command for the high-volume queues, on the analytics queue."""
    return rq_worker_of_class(log_dir, worker_class, "analytics", name=worker_class)


def enqueue_effect(key: str, pipeline: Pipeline | None = None, **options: object) -> Job:
    """A tracked test job (tests.worker_tasks.record_effect_job) that retries at once."""
    return rq_app.get_queue("analytics").enqueue_call(
        "tests.worker_tasks.record_effect_job",
        kwargs={"key": key, **options},
        retry=Retry(max=2),
        on_failure=Callback(rq_app.FAILURE_CALLBACK),
        pipeline=pipeline,
    )


def enqueue_batch(*keys: str) -> dict[str, Job]:
    """Jobs enqueued in one Redis transaction: a waiting worker takes them as one batch."""
    with rq_app.get_queue("analytics").connection.pipeline() as pipeline:
        jobs = {key: enqueue_effect(key, pipeline) for key in keys}
        pipeline.execute()
    return jobs


def statuses(stack: LocalStack) -> dict[str, str]:
    rows = query(stack, "SELECT payload->'kwargs'->>'key', status, attempts FROM task_records ORDER BY 1")
    return {key: f"{status}/{attempts}" for key, status, attempts in (row.split("|") for row in rows.splitlines())}


@pytest.mark.parametrize("worker_class", ["BatchWorker", "InProcessWorker", "PreloadedWorker"])
async def test_worker_class_runs_tracked_jobs(worker_class: str, stack: LocalStack, tmp_path: Path) -> None:
    jobs = [rq_app.enqueue_job("analytics", "backend_app.core.rq_tasks.ping_job") for _ in range(5)]
    assert all(job is not None for job in jobs)
    worker = analytics_worker(worker_class, tmp_path).start()
    assert stack.primary is not None
    try:
        await wait_until(
            lambda: stack.primary.psql("SELECT count(*) FROM task_records WHERE status = 'succeeded'") == "5",
            what="five jobs to succeed",
        )
    finally:
        worker.stop()

    assert stack.primary.psql("SELECT DISTINCT result::text FROM task_records") == '"pong"'
    assert all(rq_app.get_job_status(job.id)["status"] == "finished" for job in jobs if job is not None)


async def test_batch_worker_handles_each_jobs_failure_and_retry_on_its_own(
    stack: LocalStack, tmp_path: Path, test_task_tables: None
) -> None:
    # One batch: two plain jobs, one that fails once then succeeds, one refused for good.
    jobs = {
        "first": enqueue_effect("first"),
        "flaky": enqueue_effect("flaky", fail_times=1),
        "refused": enqueue_effect("refused", fail="permanent"),
        "last": enqueue_effect("last"),
    }
    worker = analytics_worker("BatchWorker", tmp_path).start()
    try:
        await wait_until(
            lambda: query(stack, "SELECT count(*) FROM task_records WHERE status IN ('succeeded', 'failed')") == "4",
            what="every job to end",
        )
    finally:
        worker.stop()

    assert statuses(stack) == {
        "first": "succeeded/1",
        "flaky": "succeeded/2",
        "last": "succeeded/1",
        "refused": "failed/1",
    }
    assert query(stack, "SELECT string_agg(key, ',' ORDER BY key) FROM test_task_effects") == "first,flaky,last"
    assert {key: rq_app.get_job_status(job.id)["status"] for key, job in jobs.items()} == {
        "first": "finished",
        "flaky": "finished",
        "refused": "failed",
        "last": "finished",
    }
    assert rq_app.get_job_status(jobs["first"].id)["result"] == {"key": "first", "runs": 1}
    assert "batch of 4 from analytics: 2 succeeded, 1 retrying, 1 failed, 0 handed back" in worker.output()


async def test_batch_worker_stopped_mid_batch_hands_the_unstarted_jobs_back(
    stack: LocalStack, tmp_path: Path, test_task_tables: None
) -> None:
    jobs = [enqueue_effect(f"job{number}", sleep_after_effect=2) for number in range(4)]
    queue = rq_app.get_queue("analytics")
    worker = analytics_worker("BatchWorker", tmp_path).start()
    try:
        await wait_until(lambda: query(stack, "SELECT count(*) FROM test_task_effects") == "1", what="the first job")
        assert queue.count == 0  # the whole batch was taken
        [rq_worker] = RQWorker.all(queue=queue)
        assert rq_worker.get_current_job_id() == jobs[0].id  # what `rq info` shows
    finally:
        worker.stop()  # SIGTERM: warm shutdown while job0 sleeps

    # job0 finished; the other three are back at the front of the queue, in order, unrun,
    # their task records queued again with no attempt counted.
    assert statuses(stack) == {"job0": "succeeded/1", "job1": "queued/0", "job2": "queued/0", "job3": "queued/0"}
    assert queue.job_ids == [job.id for job in jobs[1:]]
    assert query(stack, "SELECT count(*) FROM test_task_runs") == "1"
    assert "handed 3 unstarted job(s) back to analytics" in worker.output()

    (tmp_path / "again").mkdir()
    worker = analytics_worker("BatchWorker", tmp_path / "again").start()
    try:
        await wait_until(
            lambda: query(stack, "SELECT count(*) FROM task_records WHERE status = 'succeeded'") == "4",
            what="the handed-back jobs to run",
        )
    finally:
        worker.stop()
    assert set(statuses(stack).values()) == {"succeeded/1"}
    assert query(stack, "SELECT count(*) FROM test_task_runs") == "4"


async def test_batch_worker_cold_shutdown_fails_the_running_job_for_retry_and_hands_back_the_rest(
    stack: LocalStack, tmp_path: Path, test_task_tables: None
) -> None:
    jobs = [enqueue_effect(f"job{number}", sleep_after_effect=5) for number in range(3)]
    queue = rq_app.get_queue("analytics")
    worker = analytics_worker("BatchWorker", tmp_path).start()
    try:
        await wait_until(lambda: query(stack, "SELECT count(*) FROM test_task_effects") == "1", what="the first job")
        assert worker.process is not None
        os.killpg(worker.process.pid, signal.SIGTERM)  # warm: finish job0, then stop
        await asyncio.sleep(1.5)  # RQ ignores a second signal within a second of the first
        os.killpg(worker.process.pid, signal.SIGTERM)  # cold: stop job0 now
        assert worker.process.wait(timeout=20) == 0
    finally:
        worker.stop()

    assert "cold shut down" in worker.output()
    # job0 was cut short: failed, with a retry queued; the others never began.
    assert statuses(stack) == {"job0": "retrying/1", "job1": "queued/0", "job2": "queued/0"}
    assert queue.job_ids == [jobs[1].id, jobs[2].id, jobs[0].id]
    assert "batch of 3 from analytics: 0 succeeded, 1 retrying, 0 failed, 2 handed back" in worker.output()


async def test_batch_worker_skips_a_redelivered_job_that_already_succeeded(stack: LocalStack, tmp_path: Path) -> None:
    queue = rq_app.get_queue("analytics")
    job = rq_app.enqueue_job("analytics", "backend_app.core.rq_tasks.ping_job")
    assert job is not None
    worker = analytics_worker("BatchWorker", tmp_path).start()
    try:
        await wait_until(lambda: rq_app.get_job_status(job.id)["result"] == "pong", what="the first delivery")
        # The same job delivered again, as after a crash between its record and RQ's status.
        queue.enqueue_job(job)
        await wait_until(
            lambda: worker.output().count("batch of 1 from analytics: 1 succeeded,") == 2, what="the second delivery"
        )
    finally:
        worker.stop()
    assert query(stack, f"SELECT status, attempts, result FROM task_records WHERE id = '{job.id}'") == (
        'succeeded|1|"pong"'
    )
    assert rq_app.get_job_status(job.id)["result"] is None  # the second delivery did not run the function
    assert "already finished or cancelled; skipping this delivery" in worker.output()


async def test_batch_worker_goes_on_when_the_database_refuses_a_batch_statement(
    stack: LocalStack, tmp_path: Path, test_task_tables: None
) -> None:
    assert stack.primary is not None
    # Real refusals (not the database's absence): task records for "poison" cannot be
    # created, and "sticky" cannot be marked succeeded.
    stack.primary.psql(
        """
        CREATE FUNCTION refuse_test_records() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.payload->'kwargs'->>'key' = 'poison'
               OR (NEW.payload->'kwargs'->>'key' = 'sticky' AND NEW.status = 'succeeded') THEN
                RAISE EXCEPTION 'refused by test trigger';
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER refuse_test_records BEFORE INSERT OR UPDATE ON task_records
            FOR EACH ROW EXECUTE FUNCTION refuse_test_records();
        """
    )
    try:
        # Batch one: its start statement is refused, so each job starts its own record.
        first = {key: enqueue_effect(key) for key in ("a", "poison", "b")}
        worker = analytics_worker("BatchWorker", tmp_path).start()
        try:
            await wait_until(
                lambda: rq_app.get_job_status(first["poison"].id)["status"] == "failed", what="poison to fail for good"
            )
            await wait_until(lambda: "batch of 3 from analytics: 2 succeeded, 1 retrying" in worker.output(), what="1")
            # Batch two: its successes statement is refused, so each is recorded on its own.
            second = enqueue_batch("c", "sticky", "d")
            await wait_until(lambda: "batch of 3 from analytics: 3 succeeded" in worker.output(), what="batch two")
            # The worker is still taking work.
            last = enqueue_effect("e")
            await wait_until(lambda: rq_app.get_job_status(last.id)["status"] == "finished", what="a later job")
        finally:
            worker.stop()
    finally:
        stack.primary.psql("DROP TRIGGER refuse_test_records ON task_records; DROP FUNCTION refuse_test_records()")

    output = worker.output()
    assert "could not start 3 task records together (" in output
    assert "could not record 3 successes together (" in output
    assert f"task {second['sticky'].id}: could not record its success (" in output
    assert "found an unhandled exception" not in output
    # Each job ran once (poison never got past its record: it has none, and RQ failed it).
    assert statuses(stack) == {
        "a": "succeeded/1",
        "b": "succeeded/1",
        "c": "succeeded/1",
        "d": "succeeded/1",
        "e": "succeeded/1",
        "sticky": "started/1",
    }
    assert query(stack, "SELECT string_agg(key, ',' ORDER BY key) FROM test_task_effects") == "a,b,c,d,e,sticky"
    assert {key: rq_app.get_job_status(job.id)["status"] for key, job in second.items()} == {
        "c": "finished",
        "sticky": "finished",
        "d": "finished",
    }


async def test_batch_worker_enqueues_the_dependents_of_a_finished_job(
    stack: LocalStack, tmp_path: Path, test_task_tables: None
) -> None:
    plain = enqueue_effect("plain")
    parent = enqueue_effect("parent")
    child = rq_app.get_queue("analytics").enqueue_call(
        "tests.worker_tasks.record_effect_job", kwargs={"key": "child"}, depends_on=parent
    )
    assert child.get_status() == "deferred"
    worker = analytics_worker("BatchWorker", tmp_path).start()
    try:
        await wait_until(lambda: rq_app.get_job_status(child.id)["status"] == "finished", what="the dependent job")
    finally:
        worker.stop()
    assert statuses(stack) == {"plain": "succeeded/1", "parent": "succeeded/1", "child": "succeeded/1"}
    assert rq_app.get_job_status(plain.id)["status"] == "finished"
    assert "batch of 2 from analytics: 2 succeeded" in worker.output()


@pytest.mark.parametrize("worker_class", ["BatchWorker", "InProcessWorker"])
async def test_a_job_timed_out_mid_transaction_leaves_nothing_behind(
    worker_class: str, stack: LocalStack, tmp_path: Path, test_task_tables: None
) -> None:
    queue = rq_app.get_queue("analytics")
    slow = queue.enqueue_call(
        "tests.worker_tasks.slow_transaction_job",
        kwargs={"key": "slow", "seconds": 4},
        timeout=1,
        on_failure=Callback(rq_app.FAILURE_CALLBACK),
    )
    worker = analytics_worker(worker_class, tmp_path).start()
    try:
        await wait_until(lambda: rq_app.get_job_status(slow.id)["status"] == "failed", what="the timeout")
        # The same process goes on with the next job, past the time the slow one would have
        # committed had its transaction been left running in the worker's event loop.
        after = enqueue_effect("after", sleep_after_effect=4)
        await wait_until(lambda: rq_app.get_job_status(after.id)["status"] == "finished", what="the next job")
        last = enqueue_effect("last")
        await wait_until(lambda: rq_app.get_job_status(last.id)["status"] == "finished", what="one more job")
        # The slow job's transaction neither committed nor stayed open in the worker.
        assert query(stack, "SELECT string_agg(key, ',' ORDER BY key) FROM test_task_effects") == "after,last"
        slow_sessions = (
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE pid <> pg_backend_pid() AND query LIKE '%pg_sleep%' AND state <> 'idle'"
        )
        assert query(stack, slow_sessions) == "0"
    finally:
        worker.stop()
    assert statuses(stack) == {"after": "succeeded/1", "last": "succeeded/1", "slow": "failed/1"}

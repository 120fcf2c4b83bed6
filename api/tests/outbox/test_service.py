"""outbox.add records work in the caller's transaction: both commit, or neither."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from backend_app.core.read_replica import get_database_router
from backend_app.devstack import LocalStack
from backend_app.outbox import service as outbox
from backend_app.tasks.models import TaskBackend


async def test_committed_write_leaves_a_pending_task_and_an_outbox_row(
    probe_client: httpx.AsyncClient, stack: LocalStack
) -> None:
    response = await probe_client.post("/probe/tasks", json={"backend": "celery", "key": "a"})

    assert response.status_code == 201
    task_id = response.json()["task_id"]
    assert stack.primary is not None
    assert stack.primary.psql(f"SELECT status FROM task_records WHERE id = '{task_id}'") == "pending"
    assert stack.primary.psql(f"SELECT count(*) FROM outbox_messages WHERE task_id = '{task_id}'") == "1"


async def test_rolled_back_write_leaves_no_task(probe_client: httpx.AsyncClient, stack: LocalStack) -> None:
    response = await probe_client.post("/probe/tasks", json={"backend": "rq", "key": "b", "roll_back": True})

    assert response.status_code == 422
    assert stack.primary is not None
    assert stack.primary.psql("SELECT count(*) FROM task_records") == "0"
    assert stack.primary.psql("SELECT count(*) FROM outbox_messages") == "0"


async def test_same_idempotency_key_records_the_task_once(app: FastAPI, stack: LocalStack) -> None:
    router = get_database_router()
    for _ in range(2):
        async with router.write_session() as session:
            task_id = await outbox.add(
                session=session,
                backend=TaskBackend.rq,
                queue="analytics",
                task="tests.worker_tasks.record_effect_job",
                kwargs={"key": "once"},
                idempotency_key="signup-42-welcome",
            )
            assert task_id == "signup-42-welcome"

    assert stack.primary is not None
    assert stack.primary.psql("SELECT count(*) FROM outbox_messages") == "1"


async def test_unknown_queue_is_refused(app: FastAPI) -> None:
    async with get_database_router().write_session() as session:
        with pytest.raises(ValueError, match="'emails' is not a rq queue"):
            await outbox.add(session=session, backend=TaskBackend.rq, queue="emails", task="x.y")

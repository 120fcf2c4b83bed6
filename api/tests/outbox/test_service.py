"""outbox.add records work in the caller's transaction: both commit, or neither."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from backend_app.core.read_replica import get_database_router
from backend_app.outbox import repository as outbox_repository
from backend_app.outbox import service as outbox
from backend_app.tasks.models import TaskBackend
from devtools.devstack import LocalStack


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
            task_id = await outbox.add_named(
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
            await outbox.add_named(session=session, backend=TaskBackend.rq, queue="emails", task="x.y")


async def test_a_task_recorded_in_a_request_keeps_its_id_in_both_rows(
    probe_client: httpx.AsyncClient, stack: LocalStack
) -> None:
    response = await probe_client.post(
        "/probe/tasks", json={"backend": "rq", "key": "traced"}, headers={"X-Request-ID": "trace-me-9"}
    )

    task_id = response.json()["task_id"]
    assert stack.primary is not None
    assert stack.primary.psql(f"SELECT request_id FROM task_records WHERE id = '{task_id}'") == "trace-me-9"
    assert stack.primary.psql(f"SELECT request_id FROM outbox_messages WHERE task_id = '{task_id}'") == "trace-me-9"


async def test_the_longest_request_id_the_api_accepts_fits(probe_client: httpx.AsyncClient, stack: LocalStack) -> None:
    longest = "r" * 128
    response = await probe_client.post(
        "/probe/tasks", json={"backend": "celery", "key": "long"}, headers={"X-Request-ID": longest}
    )

    assert response.status_code == 201, response.text
    assert stack.primary is not None
    assert stack.primary.psql("SELECT request_id FROM outbox_messages") == longest


async def test_a_task_recorded_outside_a_request_has_no_request_id(app: FastAPI, stack: LocalStack) -> None:
    async with get_database_router().write_session() as session:
        await outbox.add_named(
            session=session, backend=TaskBackend.rq, queue="analytics", task="tests.worker_tasks.record_effect_job"
        )

    assert stack.primary is not None
    assert stack.primary.psql("SELECT count(*) FROM task_records WHERE request_id IS NULL") == "1"
    assert stack.primary.psql("SELECT count(*) FROM outbox_messages WHERE request_id IS NULL") == "1"


async def test_a_task_published_again_keeps_the_request_id_it_was_recorded_with(
    probe_client: httpx.AsyncClient, stack: LocalStack
) -> None:
    """A requeue or the reconciler's republish adds an outbox row: it names the first request,
    so the new attempt's log lines still lead back to it."""
    response = await probe_client.post(
        "/probe/tasks", json={"backend": "celery", "key": "again"}, headers={"X-Request-ID": "first-request"}
    )
    task_id = response.json()["task_id"]

    async with get_database_router().write_session() as session:
        await outbox_repository.add_message(session, task_id)

    assert stack.primary is not None
    assert stack.primary.psql(
        f"SELECT string_agg(coalesce(request_id, 'NULL'), ',') FROM outbox_messages WHERE task_id = '{task_id}'"
    ) == ("first-request,first-request")


async def test_add_all_records_several_tasks_in_one_statement_in_order(app: FastAPI, stack: LocalStack) -> None:
    from sqlalchemy import event

    from backend_app.emails import tasks as email_tasks
    from backend_app.notifications import tasks as notification_tasks

    push = notification_tasks.send_new_message_notification_job.call(
        sender_id=1, sender_name="Ada", receiver_id=2, message_preview="hello"
    )
    email = email_tasks.send_message_notification_email.call(
        recipient_email="bob@example.com", recipient_name="Bob", sender_name="Ada", message_preview="hello"
    )
    router = get_database_router()
    async with router.write_session() as session:  # the email's key is taken already
        await outbox.add(session, email, idempotency_key="message-email-taken")

    statements: list[str] = []
    async with router.write_session() as session:
        engine = session.bind.sync_engine  # type: ignore[union-attr]
        listener = lambda *args: statements.append(args[2])  # noqa: E731 (before_cursor_execute's statement)
        event.listen(engine, "before_cursor_execute", listener)
        try:
            ids = await outbox.add_all(
                session,
                [
                    outbox.Entry(push),
                    outbox.Entry(email, idempotency_key="message-email-7"),
                    outbox.Entry(email, idempotency_key="message-email-taken"),
                ],
            )
        finally:
            event.remove(engine, "before_cursor_execute", listener)

    assert len(statements) == 1, statements
    assert ids[1:] == ["message-email-7", "message-email-taken"]
    assert stack.primary is not None
    # In the order given, the taken key left as it was (its one earlier row).
    assert stack.primary.psql("SELECT string_agg(task_id, ',' ORDER BY id) FROM outbox_messages") == (
        f"message-email-taken,{ids[0]},message-email-7"
    )
    recorded_now = f"'{ids[0]}', 'message-email-7'"
    assert stack.primary.psql(
        f"SELECT string_agg(queue, ',' ORDER BY queue) FROM task_records WHERE id IN ({recorded_now})"
    ) == ("emails,notifications")

    async with router.write_session() as session:
        with pytest.raises(ValueError, match="twice"):
            await outbox.add_all(
                session, [outbox.Entry(email, idempotency_key="k"), outbox.Entry(email, idempotency_key="k")]
            )

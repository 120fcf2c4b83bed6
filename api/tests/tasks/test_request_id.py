"""A task carries the id of the request that recorded it: in its task record and outbox row,
on the relay's lines about it, in its message (Celery header, RQ job meta) and on every line
its worker writes while it runs. Each process runs its Procfile line with LOG_FORMAT=json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from rq.job import Job

from backend_app.core.rq_app import get_redis
from devtools.devstack import LocalStack
from tests.accounts import PASSWORD, registration
from tests.conftest import SmtpSink, query, wait_for_mail
from tests.processes import Worker, celery_worker, relay, rq_worker, wait_until, web_server

# DEBUG: the API's and the relay's line per task, and the batch worker's per job, are DEBUG.
JSON_LOGS = {"LOG_FORMAT": "json", "LOG_LEVEL": "DEBUG"}


def json_lines(worker: Worker) -> list[dict[str, Any]]:
    """The process's log lines that are ours or Celery's (JSON); banners and RQ's own are not."""
    return [json.loads(line) for line in worker.output().splitlines() if line.startswith("{")]


def lines_about(worker: Worker, task_id: str) -> list[dict[str, Any]]:
    return [line for line in json_lines(worker) if task_id in line["message"]]


def status_of(stack: LocalStack, task_id: str) -> str:
    return query(stack, f"SELECT status FROM task_records WHERE id = '{task_id}'")


async def test_a_sign_up_email_carries_the_request_id_from_the_api_to_the_celery_worker(
    stack: LocalStack, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    request_id = "sign-up-trace-7"
    server, base_url = web_server(tmp_path, env=JSON_LOGS)
    processes = [server, relay(tmp_path, env=JSON_LOGS), celery_worker(tmp_path, env={"LOG_FORMAT": "json"})]
    try:
        for process in processes:
            process.start()
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
            registered = await client.post(
                "/api/auth/register",
                json=registration("ada"),
                headers={"X-Request-ID": request_id},
            )
            assert registered.status_code == 201, registered.text
            task_id = f"welcome-email-{registered.json()['id']}"
            await wait_for_mail(smtp_sink, "ada@example.com")
            await wait_until(lambda: status_of(stack, task_id) == "succeeded", what="the email task to succeed")

            # The task API answers it to the owner, from a replica.
            stack.wait_for_replicas()
            login = await client.post("/api/auth/login", json={"email": "ada@example.com", "password": PASSWORD})
            owner = {"Authorization": f"Bearer {login.json()['access_token']}"}
            task = (await client.get(f"/api/tasks/{task_id}", headers=owner)).json()
            mine = (await client.get("/api/users/me/tasks", headers=owner)).json()
    finally:
        for process in reversed(processes):
            process.stop()
    api, relay_process, worker = processes

    assert task["request_id"] == request_id
    assert [(t["id"], t["request_id"]) for t in mine["items"]] == [(task_id, request_id)]
    assert query(stack, f"SELECT request_id FROM task_records WHERE id = '{task_id}'") == request_id
    assert query(stack, f"SELECT string_agg(request_id, ',') FROM outbox_messages WHERE task_id = '{task_id}'") == (
        request_id
    )

    # The API's line recording the task (the access line of the later GET /api/tasks/<id>
    # names the task too, under that request's own id).
    recorded = [line for line in lines_about(api, task_id) if line["logger"] != "uvicorn.access"]
    assert [(line["logger"], line["request_id"]) for line in recorded] == [
        ("backend_app.outbox.service", request_id)
    ], recorded

    published = lines_about(relay_process, task_id)
    assert {line["request_id"] for line in published} == {request_id}, relay_process.output()
    assert "backend_app.outbox.relay" in {line["logger"] for line in published}, published
    # The relay's own lines, outside any message, name no request: the id was reset.
    batch_lines = [line for line in json_lines(relay_process) if "since start" in line["message"]]
    assert {line["request_id"] for line in batch_lines} == {"-"}, batch_lines

    worked = lines_about(worker, task_id)
    assert {line["request_id"] for line in worked} == {request_id}, worker.output()
    # Celery's own lines (received, succeeded) and ours (the task record's), in one format.
    loggers = {line["logger"] for line in worked}
    assert {"celery.worker.strategy", "backend_app.worker.tracking", "celery.app.trace"} <= loggers, worked
    ready = [line for line in json_lines(worker) if line["message"].endswith("ready.")]
    assert [line["request_id"] for line in ready] == ["-"], worker.output()


async def test_a_follow_notification_carries_the_request_id_to_the_rq_worker(
    client: httpx.AsyncClient, stack: LocalStack, make_user: Any, tmp_path: Path
) -> None:
    _, follower_token = make_user("follower")
    followed_id, _ = make_user("followed")
    request_id = "follow-trace-3"
    relay_process = relay(tmp_path, env=JSON_LOGS).start()
    try:
        followed = await client.post(
            f"/api/users/{followed_id}/follow",
            headers={"Authorization": f"Bearer {follower_token}", "X-Request-ID": request_id},
        )
        assert followed.status_code == 204, followed.text
        task_id = query(stack, "SELECT id FROM task_records WHERE queue = 'notifications'")
        # Published with no RQ worker yet: the job waits in Redis with the id in its meta.
        await wait_until(lambda: status_of(stack, task_id) == "queued", what="the relay to publish the task")
        assert Job.fetch(task_id, connection=get_redis()).meta["request_id"] == request_id

        worker = rq_worker(tmp_path, env=JSON_LOGS).start()
        try:
            await wait_until(lambda: status_of(stack, task_id) == "succeeded", what="the notification to succeed")
        finally:
            worker.stop()
    finally:
        relay_process.stop()

    assert query(stack, f"SELECT request_id FROM task_records WHERE id = '{task_id}'") == request_id
    assert query(stack, f"SELECT request_id FROM outbox_messages WHERE task_id = '{task_id}'") == request_id
    published = lines_about(relay_process, task_id)
    # The relay's line and RQ's own (publishing runs in the relay's context).
    assert {(line["logger"], line["request_id"]) for line in published} >= {
        ("backend_app.outbox.relay", request_id),
        ("rq.queue", request_id),
    }, relay_process.output()
    assert {line["request_id"] for line in published} == {request_id}, published
    worked = lines_about(worker, task_id)
    # RQ's own line on taking the job, in our format (a JSON line) since RQ's lines go through
    # our handler, comes before the job's request is known; every other line names it.
    taken = [line for line in worked if line["logger"] == "rq.worker" and ": notifications: " in line["message"]]
    assert [line["request_id"] for line in taken] == ["-"], worked
    assert {line["request_id"] for line in worked if line not in taken} == {request_id}, worker.output()
    assert any("started" in line["message"] for line in worked), worked
    # The batch's own line, written after the job, names no request.
    batch_lines = [line for line in json_lines(worker) if line["message"].startswith("batch of")]
    assert {line["request_id"] for line in batch_lines} == {"-"}, batch_lines


async def test_a_retried_celery_attempt_keeps_the_request_id(
    probe_client: httpx.AsyncClient, stack: LocalStack, tmp_path: Path, test_task_tables: None
) -> None:
    """Celery publishes a retry itself, from the worker: the header must go with it."""
    request_id = "retry-trace-5"
    processes = [relay(tmp_path), celery_worker(tmp_path, env={"LOG_FORMAT": "json"})]
    try:
        for process in processes:
            process.start()
        recorded = await probe_client.post(
            "/probe/tasks",
            json={"backend": "celery", "key": "again", "fail_times": 1},
            headers={"X-Request-ID": request_id},
        )
        task_id = recorded.json()["task_id"]
        await wait_until(lambda: status_of(stack, task_id) == "succeeded", what="the retried task to succeed")
    finally:
        for process in reversed(processes):
            process.stop()
    worker = processes[1]

    starts = [line for line in lines_about(worker, task_id) if "started, attempt" in line["message"]]
    assert [(line["message"].rsplit(" ", 1)[1], line["request_id"]) for line in starts] == [
        ("1", request_id),
        ("2", request_id),
    ], worker.output()

"""The task status API against real workers: states, ownership, cancel, requeue, stats."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from devtools.devstack import LocalStack
from tests.probe_routes import probe
from tests.processes import Worker, celery_worker, relay, wait_until

MakeUser = Callable[..., tuple[int, str]]


@pytest.fixture
async def api(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    app.include_router(probe)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def record(api: httpx.AsyncClient, **task: object) -> str:
    response = await api.post("/probe/tasks", json=task)
    assert response.status_code == 201, response.text
    return response.json()["task_id"]


async def poll_status(api: httpx.AsyncClient, task_id: str, token: str, wanted: str, seconds: float = 30) -> dict:
    """GET the task until it shows `wanted` (reads come from the replica, so poll)."""
    seen: list[str] = []
    deadline = time.monotonic() + seconds
    while True:
        response = await api.get(f"/api/tasks/{task_id}", headers=bearer(token))
        if response.status_code == 200:
            seen.append(response.json()["status"])
            if seen[-1] == wanted:
                return response.json()
        if time.monotonic() > deadline:
            raise AssertionError(f"task {task_id} never became {wanted}; last seen {seen[-5:]}")
        await asyncio.sleep(0.05)


async def test_status_moves_from_pending_to_succeeded(
    api: httpx.AsyncClient, stack: LocalStack, make_user: MakeUser, tmp_path: Path, test_task_tables: None
) -> None:
    owner_id, token = make_user("owner")
    task_id = await record(api, backend="celery", key="journey", owner_id=owner_id, sleep_after_effect=2)
    await poll_status(api, task_id, token, "pending")

    relay_worker = relay(tmp_path).start()
    celery = celery_worker(tmp_path)
    try:
        await poll_status(api, task_id, token, "queued")
        celery.start()
        started = await poll_status(api, task_id, token, "started")
        assert started["attempts"] == 1
        assert started["started_at"] is not None
        done = await poll_status(api, task_id, token, "succeeded")
    finally:
        celery.stop()
        relay_worker.stop()

    assert done["result"] == {"key": "journey", "runs": 1}
    assert done["backend"] == "celery"
    assert done["queue"] == "emails"
    assert done["finished_at"] is not None


async def test_unknown_task_is_404_and_others_tasks_look_unknown(
    api: httpx.AsyncClient, stack: LocalStack, make_user: MakeUser
) -> None:
    owner_id, owner_token = make_user("owner")
    _, stranger_token = make_user("stranger")
    _, admin_token = make_user("admin", is_admin=True)
    task_id = await record(api, backend="rq", key="private", owner_id=owner_id)
    stack.wait_for_replicas()

    unknown = await api.get("/api/tasks/no-such-task", headers=bearer(owner_token))
    hidden = await api.get(f"/api/tasks/{task_id}", headers=bearer(stranger_token))
    by_admin = await api.get(f"/api/tasks/{task_id}", headers=bearer(admin_token))
    by_owner = await api.get(f"/api/tasks/{task_id}", headers=bearer(owner_token))

    assert (unknown.status_code, unknown.json()) == (404, {"detail": "No such task.", "code": "not_found"})
    assert (hidden.status_code, hidden.json()) == (404, {"detail": "No such task.", "code": "not_found"})
    assert by_admin.status_code == 200
    assert by_owner.json()["status"] == "pending"


async def test_task_api_needs_a_valid_token(api: httpx.AsyncClient, make_user: MakeUser) -> None:
    missing = await api.get("/api/tasks/anything")
    forged = await api.get("/api/tasks/anything", headers=bearer("not.a.jwt"))

    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    assert forged.status_code == 401
    assert "invalid or has expired" in forged.json()["detail"]
    assert forged.json()["code"] == "invalid_token"


async def test_cancel_a_pending_task_and_the_relay_never_publishes_it(
    api: httpx.AsyncClient, stack: LocalStack, make_user: MakeUser, tmp_path: Path, test_task_tables: None
) -> None:
    owner_id, token = make_user("owner")
    task_id = await record(api, backend="rq", key="unwanted", owner_id=owner_id)
    stack.wait_for_replicas()

    cancelled = await api.delete(f"/api/tasks/{task_id}", headers=bearer(token))
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"

    relay_worker = relay(tmp_path).start()
    try:
        await wait_until(
            lambda: (
                stack.primary is not None
                and stack.primary.psql("SELECT count(*) FROM outbox_messages WHERE sent_at IS NULL") == "0"
            ),
            what="the relay to settle the cancelled row",
        )
    finally:
        relay_worker.stop()
    assert stack.redis is not None
    assert stack.primary is not None
    assert stack.primary.psql(f"SELECT status FROM task_records WHERE id = '{task_id}'") == "cancelled"
    assert "0 task(s) published" in relay_worker.output()

    again = await api.delete(f"/api/tasks/{task_id}", headers=bearer(token))
    assert again.status_code == 409
    assert "only a task that has not started can be cancelled" in again.json()["detail"]


async def test_admin_requeues_a_dead_task_and_it_succeeds(
    api: httpx.AsyncClient,
    stack: LocalStack,
    make_user: MakeUser,
    relay_process: Worker,
    celery_process: Worker,
) -> None:
    owner_id, owner_token = make_user("owner")
    _, admin_token = make_user("admin", is_admin=True)
    # Fails its first 3 runs: 1 try + 2 retries, then dead. The 4th run (after requeue) succeeds.
    task_id = await record(api, backend="celery", key="phoenix", owner_id=owner_id, fail_times=3)
    await poll_status(api, task_id, owner_token, "dead")

    refused = await api.post(f"/api/tasks/{task_id}/requeue", headers=bearer(owner_token))
    requeued = await api.post(f"/api/tasks/{task_id}/requeue", headers=bearer(admin_token))

    assert refused.status_code == 403
    assert requeued.status_code == 202
    assert requeued.json()["status"] == "pending"
    done = await poll_status(api, task_id, owner_token, "succeeded")
    assert done["attempts"] == 4

    twice = await api.post(f"/api/tasks/{task_id}/requeue", headers=bearer(admin_token))
    assert twice.status_code == 409


async def test_queue_stats_for_operators(api: httpx.AsyncClient, stack: LocalStack, make_user: MakeUser) -> None:
    _, admin_token = make_user("admin", is_admin=True)
    _, user_token = make_user("user")
    await record(api, backend="celery", key="waiting")
    stack.wait_for_replicas()

    stats = await api.get("/api/tasks/queues/emails/stats", headers=bearer(admin_token))
    unknown = await api.get("/api/tasks/queues/nope/stats", headers=bearer(admin_token))
    not_admin = await api.get("/api/tasks/queues/emails/stats", headers=bearer(user_token))

    assert stats.status_code == 200
    body = stats.json()
    assert body["queue"] == "emails"
    assert body["backend"] == "celery"
    assert body["waiting"] == 1
    assert body["depth"] == 0  # still in the outbox: no relay runs in this test
    assert body["oldest_waiting_seconds"] >= 0
    assert (body["started"], body["failed"], body["dead"]) == (0, 0, 0)
    assert unknown.status_code == 404
    assert unknown.json() == {"detail": "No queue named 'nope'.", "code": "not_found"}
    assert not_admin.status_code == 403


async def test_my_tasks_are_paginated_newest_first(
    api: httpx.AsyncClient, stack: LocalStack, make_user: MakeUser
) -> None:
    owner_id, token = make_user("owner")
    other_id, _ = make_user("other")
    ids = [await record(api, backend="rq", key=f"mine-{n}", owner_id=owner_id) for n in range(3)]
    await record(api, backend="rq", key="theirs", owner_id=other_id)
    stack.wait_for_replicas()

    first = await api.get("/api/users/me/tasks", params={"limit": 2}, headers=bearer(token))
    second = await api.get("/api/users/me/tasks", params={"limit": 2, "offset": 2}, headers=bearer(token))
    too_many = await api.get("/api/users/me/tasks", params={"limit": 1000}, headers=bearer(token))

    assert first.status_code == 200
    assert first.json()["total"] == 3
    assert [t["id"] for t in first.json()["items"]] + [t["id"] for t in second.json()["items"]] == ids[::-1]
    assert too_many.status_code == 422

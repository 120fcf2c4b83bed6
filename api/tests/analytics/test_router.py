"""Analytics: client events stored by the request, job views buffered through Redis, figures."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from backend_app.analytics import buffer
from backend_app.core import rq_app
from devtools.devstack import LocalStack
from tests.accounts import sign_up
from tests.processes import Worker, relay, rq_worker, wait_until


@pytest.fixture
def analytics_worker(tmp_path: Path) -> Iterator[Worker]:
    worker = rq_worker(tmp_path).start()
    yield worker
    worker.stop()


def count(stack: LocalStack, sql: str) -> int:
    assert stack.primary is not None
    return int(stack.primary.psql(sql))


async def test_events_are_stored_in_one_batch_per_request(
    client: httpx.AsyncClient, stack: LocalStack, analytics_worker: Worker
) -> None:
    ada_id, ada = await sign_up(client, "ada")
    page_views = {"events": [{"event_type": "page_view", "data": {"path": f"/p/{n}"}} for n in range(100)]}

    signed = await client.post("/api/analytics/events", json=page_views, headers=ada)
    anonymous = await client.post("/api/analytics/events", json={"events": [{"event_type": "page_view"}]})

    assert signed.status_code == anonymous.status_code == 202
    assert signed.json() == {"accepted": 100}
    await wait_until(lambda: count(stack, "SELECT count(*) FROM analytics_events") == 101, what="101 stored events")
    assert count(stack, f"SELECT count(*) FROM analytics_events WHERE user_id = {ada_id}") == 100
    assert count(stack, "SELECT count(DISTINCT data->>'path') FROM analytics_events") == 100


async def test_accepted_events_survive_redis_losing_its_data(client: httpx.AsyncClient, stack: LocalStack) -> None:
    response = await client.post("/api/analytics/events", json={"events": [{"event_type": "click"}] * 2})
    assert stack.redis is not None
    stack.redis.stop()
    stack.redis.start()  # the test Redis keeps nothing on disk: it comes back empty

    assert response.status_code == 202
    assert count(stack, "SELECT count(*) FROM analytics_events WHERE event_type = 'click'") == 2


async def test_events_are_stored_while_redis_is_down(client: httpx.AsyncClient, stack: LocalStack) -> None:
    assert stack.redis is not None
    stack.redis.stop()

    response = await client.post("/api/analytics/events", json={"events": [{"event_type": "click"}] * 3})

    assert response.status_code == 202
    assert count(stack, "SELECT count(*) FROM analytics_events WHERE event_type = 'click'") == 3


@pytest.mark.parametrize(
    "batch",
    [
        {"events": []},
        {"events": [{"event_type": "x"}] * 101},
        {"events": [{"event_type": "Bad Type"}]},
        {"events": [{"event_type": "click", "data": {"note": "nul\u0000byte"}}]},
        {"events": [{"event_type": "click", "subject_id": 2**64}]},
        {"events": [{"event_type": "click", "occurred_at": "0001-01-01T00:00:00Z"}]},
    ],
)
async def test_bad_batches_are_422(client: httpx.AsyncClient, batch: dict) -> None:
    assert (await client.post("/api/analytics/events", json=batch)).status_code == 422


async def test_clients_cannot_send_the_events_the_server_records(client: httpx.AsyncClient, stack: LocalStack) -> None:
    response = await client.post(
        "/api/analytics/events", json={"events": [{"event_type": "job_view", "subject_id": 1}]}
    )
    assert response.status_code == 422
    assert "job_view events are recorded by the server" in response.text
    assert count(stack, "SELECT count(*) FROM analytics_events") == 0


async def test_job_views_and_applications_per_job(
    client: httpx.AsyncClient, stack: LocalStack, analytics_worker: Worker
) -> None:
    _, acme = await sign_up(client, "acme", "employer")
    _, sam = await sign_up(client, "sam")
    job = (
        await client.post(
            "/api/jobs",
            json={"title": "Welder", "description": "Weld things all day long.", "location": "Oslo"},
            headers=acme,
        )
    ).json()
    stack.wait_for_replicas()
    _, kim = await sign_up(client, "kim")
    for _ in range(3):
        assert (await client.get(f"/api/jobs/{job['id']}", headers=sam)).status_code == 200
    assert (await client.get(f"/api/jobs/{job['id']}", headers=kim)).status_code == 200
    await client.get(f"/api/jobs/{job['id']}")  # anonymous views are not counted
    await client.post(f"/api/jobs/{job['id']}/apply", json={}, headers=sam)

    await wait_until(
        lambda: count(stack, "SELECT count(*) FROM analytics_events WHERE event_type = 'job_view'") == 4,
        what="four job views",
    )
    stack.wait_for_replicas()
    stats = (await client.get(f"/api/analytics/jobs/{job['id']}/stats", headers=acme)).json()
    # Only the job's employer reads them.
    assert (await client.get(f"/api/analytics/jobs/{job['id']}/stats", headers=sam)).status_code == 403

    # Each viewer counts once a day, however often they looked.
    assert stats["total_views"] == 2
    assert len(stats["views_per_day"]) == 1
    assert stats["applications"] == 1


async def test_user_figures_are_aggregated_by_the_worker(
    client: httpx.AsyncClient, stack: LocalStack, analytics_worker: Worker, tmp_path: Path
) -> None:
    ada_id, ada = await sign_up(client, "ada")
    bob_id, bob = await sign_up(client, "bob")
    stack.wait_for_replicas()
    await client.post(f"/api/users/{ada_id}/follow", headers=bob)
    await client.post("/api/posts", json={"body": "hello"}, headers=ada)
    before = await client.get(f"/api/analytics/users/{ada_id}/stats", headers=ada)

    relay_worker = relay(tmp_path).start()
    try:
        refreshed = await client.post("/api/analytics/users/me/stats/refresh", headers=ada)
        await wait_until(lambda: count(stack, "SELECT count(*) FROM user_stats") == 1, what="the figures")
    finally:
        relay_worker.stop()
    stack.wait_for_replicas()
    stats = (await client.get(f"/api/analytics/users/{ada_id}/stats", headers=ada)).json()
    # An account's figures are its own.
    assert (await client.get(f"/api/analytics/users/{ada_id}/stats", headers=bob)).status_code == 403

    assert before.status_code == 200, "computed on the first read"
    assert refreshed.status_code == 202
    assert (stats["followers"], stats["following"], stats["posts"]) == (1, 0, 1)
    assert stats["applications_sent"] == stats["applications_received"] == stats["job_views"] == 0
    assert bob_id != ada_id


async def test_track_user_event_job_stores_one_event(stack: LocalStack, analytics_worker: Worker) -> None:
    job = rq_app.enqueue_job(
        "analytics",
        "backend_app.core.rq_tasks.track_user_event_job",
        user_id=7,
        event_type="signup_completed",
        event_data={"source": "ads"},
    )
    assert job is not None

    await wait_until(lambda: count(stack, "SELECT count(*) FROM analytics_events") == 1, what="the event")
    assert stack.primary is not None
    assert (
        stack.primary.psql("SELECT event_type || ':' || user_id || ':' || (data->>'source') FROM analytics_events")
        == "signup_completed:7:ads"
    )


@pytest.mark.usefixtures("worker_code_in_this_process")
def test_a_flush_that_died_half_way_is_finished_by_the_next_once(stack: LocalStack) -> None:
    from backend_app.analytics import service

    redis = rq_app.get_redis()
    events = [buffer.new_event("page_view", user_id=None) for _ in range(5)]
    # As if a flush renamed the buffer, stored it, and died before deleting its key.
    redis.rpush(f"{buffer.PROCESSING_PREFIX}dead-flush", *(json.dumps(e) for e in events))
    service.store_one(dict(events[0]))

    stored = service.flush()

    assert stored == 4, "the event already stored is skipped by its id"
    assert count(stack, "SELECT count(*) FROM analytics_events") == 5
    assert list(redis.scan_iter(match=f"{buffer.PROCESSING_PREFIX}*")) == []


@pytest.mark.usefixtures("worker_code_in_this_process")
def test_an_event_postgresql_refuses_is_set_aside_and_the_rest_are_stored(stack: LocalStack) -> None:
    from backend_app.analytics import service

    redis = rq_app.get_redis()
    good = [buffer.new_event("page_view", user_id=None) for _ in range(3)]
    poisoned = buffer.new_event("page_view", user_id=None, data={"bad": "nul\u0000"})
    redis.rpush(buffer.EVENTS_KEY, *(json.dumps(e) for e in [good[0], poisoned, *good[1:]]))

    stored = service.flush()

    assert stored == 3
    assert count(stack, "SELECT count(*) FROM analytics_events") == 3
    assert redis.llen(buffer.DEAD_LETTER_KEY) == 1
    assert list(redis.scan_iter(match=f"{buffer.PROCESSING_PREFIX}*")) == []


async def test_figures_are_computed_on_the_first_read_and_not_stored(
    client: httpx.AsyncClient, stack: LocalStack, make_user: Callable[..., tuple[int, str]]
) -> None:
    ada_id, ada = await sign_up(client, "ada")
    _, bob = await sign_up(client, "bob")
    await client.post(f"/api/users/{ada_id}/follow", headers=bob)
    await client.post("/api/posts", json={"body": "hello"}, headers=ada)
    await client.post("/api/posts", json={"body": "again"}, headers=ada)
    _, root = make_user("root", is_admin=True)  # waits for the replicas

    own = await client.get(f"/api/analytics/users/{ada_id}/stats", headers=ada)
    by_admin = await client.get(f"/api/analytics/users/{ada_id}/stats", headers={"Authorization": f"Bearer {root}"})
    by_other = await client.get(f"/api/analytics/users/{ada_id}/stats", headers=bob)
    nobody = await client.get("/api/analytics/users/999999/stats", headers={"Authorization": f"Bearer {root}"})

    assert own.status_code == 200
    figures = own.json()
    assert (figures["user_id"], figures["followers"], figures["following"], figures["posts"]) == (ada_id, 1, 0, 2)
    assert figures["applications_sent"] == figures["applications_received"] == figures["job_views"] == 0
    assert by_admin.status_code == 200
    assert {k: v for k, v in by_admin.json().items() if k != "computed_at"} == {
        k: v for k, v in figures.items() if k != "computed_at"
    }
    assert by_other.status_code == 403
    assert by_other.json()["detail"] == "You may read only your own figures."
    assert nobody.status_code == 404
    assert nobody.json()["detail"] == "No such user."
    assert count(stack, "SELECT count(*) FROM user_stats") == 0, "a read stores nothing"

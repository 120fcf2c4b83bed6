"""GET /metrics: who may scrape it, and that each family says what happened."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from devtools.devstack import LocalStack
from tests.accounts import sign_up
from tests.conftest import PROBE, SmtpSink, query
from tests.metrics.scrape import samples, value, values
from tests.processes import Worker, wait_until, web_server

UNFINISHED = "('pending', 'queued', 'started', 'retrying')"


async def scrape(client: httpx.AsyncClient) -> str:
    answer = await client.get("/metrics", headers=PROBE)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return answer.text


async def test_only_the_probe_token_and_administrators_may_scrape(
    client: httpx.AsyncClient, make_user: Callable[..., tuple[int, str]]
) -> None:
    anonymous = await client.get("/metrics")
    assert anonymous.status_code == 401
    assert anonymous.json()["code"] == "not_authenticated"
    assert set(anonymous.json()) == {"detail", "code"}
    assert anonymous.headers["www-authenticate"] == "Bearer"
    wrong_token = await client.get("/metrics", headers={"Authorization": "Bearer not-the-probe-token"})
    assert wrong_token.status_code == 401
    assert "jobplatform_" not in wrong_token.text

    _, member = make_user("member")
    refused = await client.get("/metrics", headers={"Authorization": f"Bearer {member}"})
    assert refused.status_code == 403
    assert refused.json()["code"] == "forbidden"
    assert set(refused.json()) == {"detail", "code"}

    _, admin = make_user("admin", is_admin=True)
    allowed = await client.get("/metrics", headers={"Authorization": f"Bearer {admin}"})
    assert allowed.status_code == 200
    assert "jobplatform_http_requests_total" in allowed.text


async def test_metrics_is_not_in_the_public_openapi_document(client: httpx.AsyncClient) -> None:
    assert "/metrics" not in (await client.get("/openapi.json")).json()["paths"]


async def test_a_scrape_after_traffic_and_background_work_reports_every_family(
    client: httpx.AsyncClient,
    stack: LocalStack,
    smtp_sink: SmtpSink,
    relay_process: Worker,
    celery_process: Worker,
    rq_process: Worker,
) -> None:
    # Counters live as long as the test process: compare with a scrape from before.
    before = await scrape(client)

    boss_id, boss = await sign_up(client, "boss", role="employer")
    _, ann = await sign_up(client, "ann")
    posted = await client.post(
        "/api/jobs",
        json={"title": "Site reliability engineer", "description": "Keep the metrics honest.", "location": "Oslo"},
        headers=boss,
    )
    assert posted.status_code == 201, posted.text
    assert (await client.post(f"/api/users/{boss_id}/follow", headers=ann)).status_code == 204
    stack.wait_for_replicas()
    for _ in range(3):
        assert (await client.get(f"/api/jobs/{posted.json()['id']}")).status_code == 200
    assert (await client.get("/no/such/path/42")).status_code == 404

    def background_work_done() -> bool:
        return query(stack, f"SELECT count(*) FROM task_records WHERE status IN {UNFINISHED}") == "0"

    await wait_until(background_work_done, seconds=60, what="the background work to finish")
    after = await scrape(client)
    for _ in range(50):  # the relay adds a round's publish delays once the round is published
        if sum(values(after, "jobplatform_outbox_publish_delay_seconds_count").values()) >= sum(
            values(after, "jobplatform_task_start_delay_seconds_count").values()
        ):
            break
        await asyncio.sleep(0.1)
        after = await scrape(client)

    # HTTP: the route template, never the raw path; unknown paths share one value.
    job_route = {"method": "GET", "route": "/api/jobs/{job_id}", "status": "200"}
    assert (
        value(after, "jobplatform_http_requests_total", **job_route)
        - value(before, "jobplatform_http_requests_total", **job_route)
        == 3
    )
    assert (
        value(after, "jobplatform_http_request_duration_seconds_count", **job_route)
        - value(before, "jobplatform_http_request_duration_seconds_count", **job_route)
        == 3
    )
    unmatched = {"method": "GET", "route": "unmatched", "status": "404"}
    assert value(after, "jobplatform_http_requests_total", **unmatched) >= 1
    assert not any("42" in s.labels.get("route", "") for s in samples(after))
    assert value(after, "jobplatform_http_requests_in_flight") >= 1  # this scrape

    # Tasks: exactly what the task records say, for both backends.
    recorded = query(
        stack,
        "SELECT backend, queue, name, status, count(*), sum(attempts) FROM task_records"
        " GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
    )
    expected_records, expected_attempts = {}, {}
    for line in recorded.splitlines():
        backend, queue, name, status, count, attempts = line.split("|")
        labels = (("backend", backend), ("queue", queue), ("status", status), ("task", name))
        expected_records[labels] = float(count)
        expected_attempts[labels] = float(attempts)
    assert values(after, "jobplatform_task_records") == expected_records
    assert values(after, "jobplatform_task_record_attempts") == expected_attempts
    succeeded_backends = {
        dict(labels)["backend"] for labels in expected_records if dict(labels)["status"] == "succeeded"
    }
    assert succeeded_backends == {"celery", "rq"}

    # Timings the workers and the relay add to Redis: one run observed per success, a start
    # delay per first attempt, a publish delay per outbox row published, for both backends.
    def grown(name: str, **labels: str) -> dict[tuple[str, ...], float]:
        growth: dict[tuple[str, ...], float] = {}
        for key, figure in values(after, name).items():
            if all(dict(key).get(label) == wanted for label, wanted in labels.items()):
                growth[key] = figure - values(before, name).get(key, 0.0)
        return {key: figure for key, figure in growth.items() if figure}

    def by_task(figures: dict[tuple[str, ...], float]) -> dict[tuple[str, str, str], float]:
        return {(dict(k)["backend"], dict(k)["queue"], dict(k)["task"]): v for k, v in figures.items()}

    succeeded = {
        (backend, queue, task): records - values(before, "jobplatform_task_records").get(labels, 0.0)
        for labels, records in expected_records.items()
        for backend, queue, status, task in [tuple(part for _, part in labels)]
        if status == "succeeded"
    }
    succeeded = {key: count for key, count in succeeded.items() if count}
    runs = by_task(grown("jobplatform_task_run_duration_seconds_count", outcome="succeeded"))
    assert runs == succeeded
    start_counts = grown("jobplatform_task_start_delay_seconds_count")
    starts = by_task(start_counts)
    assert {backend for backend, _, _ in starts} == {"celery", "rq"}
    assert starts.keys() <= succeeded.keys()
    for labels, waited in grown("jobplatform_task_start_delay_seconds_sum").items():
        assert 0 < waited / start_counts[labels] < 60
    published = grown("jobplatform_outbox_publish_delay_seconds_count")
    assert {dict(labels)["backend"] for labels in published} == {"celery", "rq"}
    assert sum(published.values()) >= sum(starts.values())

    # Outbox: everything published.
    assert value(after, "jobplatform_outbox_backlog_messages") == 0
    assert value(after, "jobplatform_outbox_oldest_unpublished_age_seconds") == 0

    # Queues, workers, Redis.
    assert value(after, "jobplatform_scrape_source_up", source="database") == 1
    assert value(after, "jobplatform_scrape_source_up", source="redis") == 1
    assert 0 < value(after, "jobplatform_redis_round_trip_seconds") < 1
    depths = values(after, "jobplatform_queue_depth")
    assert {dict(labels)["queue"] for labels in depths} == {"emails", "notifications", "analytics", "video_processing"}
    assert value(after, "jobplatform_queue_workers", backend="celery", queue="emails") >= 1
    assert value(after, "jobplatform_queue_workers", backend="rq", queue="notifications") >= 1
    assert value(after, "jobplatform_queue_workers", backend="rq", queue="video_processing") >= 1
    for labels, depth in depths.items():
        age = values(after, "jobplatform_queue_oldest_message_age_seconds").get(labels)
        assert age is None or age >= 0
        if depth == 0:
            assert age == 0

    # The database router: every replica in rotation, pools and reads counted.
    for replica in ("replica-1", "replica-2"):
        assert value(after, "jobplatform_db_node_in_rotation", node=replica) == 1
        assert value(after, "jobplatform_db_node_up", node=replica) == 1
        assert value(after, "jobplatform_db_replica_lag_bytes", node=replica) >= 0
    assert value(after, "jobplatform_db_node_up", node="primary") == 1
    assert value(after, "jobplatform_db_pool_size", pool="primary") > 0
    assert value(after, "jobplatform_db_pool_size", pool="replica-1") > 0
    assert value(after, "jobplatform_db_primary_fallback_reads_limit") > 0
    replica_reads = {"destination": "replica", "reason": "replica_in_rotation"}
    assert value(after, "jobplatform_db_reads_total", **replica_reads) > value(
        before, "jobplatform_db_reads_total", **replica_reads
    )


async def test_a_scrape_answers_with_redis_and_a_replica_down(client: httpx.AsyncClient, stack: LocalStack) -> None:
    assert stack.redis is not None
    stack.redis.stop()
    stack.replicas[0].stop()
    replica = "replica-1"

    # The monitor notices within DB_HEALTH_CHECK_INTERVAL (0.2 s in the tests).
    deadline = time.monotonic() + 10
    exposition = await scrape(client)
    while value(exposition, "jobplatform_db_node_in_rotation", node=replica) != 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        exposition = await scrape(client)
    assert value(exposition, "jobplatform_db_node_in_rotation", node=replica) == 0
    assert value(exposition, "jobplatform_db_node_up", node=replica) == 0
    assert value(exposition, "jobplatform_db_node_in_rotation", node="replica-2") == 1
    assert value(exposition, "jobplatform_scrape_source_up", source="redis") == 0
    assert value(exposition, "jobplatform_scrape_source_up", source="database") == 1
    assert not values(exposition, "jobplatform_queue_depth")
    assert values(exposition, "jobplatform_task_records") == {}  # no tasks, but the family is read
    assert "jobplatform_task_records" in exposition


async def test_messages_nobody_consumes_show_their_depth_and_age(
    probe_client: httpx.AsyncClient, stack: LocalStack, relay_process: Worker
) -> None:
    # The relay publishes, but no worker runs: the messages wait in Redis.
    for backend in ("celery", "rq"):
        answer = await probe_client.post("/probe/tasks", json={"backend": backend, "key": f"waiting-{backend}"})
        assert answer.status_code == 201, answer.text
    await wait_until(
        lambda: query(stack, "SELECT count(*) FROM task_records WHERE status = 'queued'") == "2",
        what="the relay to publish both tasks",
    )
    await asyncio.sleep(1.1)
    exposition = await scrape(probe_client)

    for backend, queue in (("celery", "emails"), ("rq", "notifications")):
        assert value(exposition, "jobplatform_queue_depth", backend=backend, queue=queue) == 1
        assert value(exposition, "jobplatform_queue_workers", backend=backend, queue=queue) == 0
        assert 1 <= value(exposition, "jobplatform_queue_oldest_message_age_seconds", backend=backend, queue=queue) < 30
    queued = values(exposition, "jobplatform_task_records")
    assert sorted((dict(labels)["backend"], dict(labels)["status"], count) for labels, count in queued.items()) == [
        ("celery", "queued", 1.0),
        ("rq", "queued", 1.0),
    ]


def test_metrics_can_be_turned_off(stack: LocalStack, tmp_path: Path) -> None:
    # METRICS_ENABLED=false (the quiet side of `python -m bench.http --observability`): the
    # Procfile's web line serves no /metrics and keeps no HTTP metrics.
    server, base_url = web_server(tmp_path, env={"METRICS_ENABLED": "false"})
    server.start()
    try:
        answer = httpx.get(f"{base_url}/metrics", headers=PROBE, timeout=10)
        assert httpx.get(f"{base_url}/health", timeout=10).status_code == 200
    finally:
        server.stop()

    assert answer.status_code == 404
    assert answer.json()["code"] == "not_found"

"""/health and /health/database against the real primary and replica."""

from __future__ import annotations

import httpx

from backend_app.devstack import LocalStack


async def test_liveness_answers_without_touching_dependencies(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_database_health_reports_every_node(client: httpx.AsyncClient, stack: LocalStack) -> None:
    stack.wait_for_replicas()

    response = await client.get("/health/database")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    primary = body["primary"]
    assert primary["status"] == "healthy"
    assert primary["role"] == "primary"
    assert primary["reachable"] is True
    assert primary["latency_ms"] >= 0
    assert primary["wal_position"]
    assert set(primary["pool"]) == {"size", "in_use", "idle", "overflow"}
    assert [replica["name"] for replica in body["replicas"]] == ["replica-1", "replica-2"]
    for replica in body["replicas"]:
        assert replica["status"] == "healthy"
        assert replica["role"] == "replica"
        assert replica["reachable"] is True
        assert replica["latency_ms"] >= 0
        assert replica["lag_bytes"] >= 0
        assert replica["lag_seconds"] >= 0
        assert replica["replay_paused"] is False
        assert replica["in_rotation"] is True
        assert replica["banned_until"] is None
        assert set(replica["pool"]) == {"size", "in_use", "idle", "overflow"}
    assert set(body["routing"]) >= {"replica", "primary_because_lag", "primary_because_down", "failovers"}
    assert body["limits"]["max_lag_seconds"] > 0
    assert stack.primary is not None
    assert stack.primary.password not in response.text
    assert "***" in primary["url"]


async def test_stopped_replica_is_degraded_not_down(client: httpx.AsyncClient, stack: LocalStack) -> None:
    stack.replicas[0].stop()

    response = await client.get("/health/database")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["primary"]["status"] == "healthy"
    stopped, running = body["replicas"]
    assert stopped["status"] == "unhealthy"
    assert stopped["reachable"] is False
    assert stopped["in_rotation"] is False
    assert stopped["banned_until"] is not None
    assert "unreachable" in stopped["out_reason"]
    # Unknown while unreachable, not the last figures seen (a stale 0 reads as caught up).
    assert (stopped["lag_bytes"], stopped["lag_seconds"]) == (None, None)
    assert running["status"] == "healthy"


async def test_stopped_primary_is_unhealthy_with_503(client: httpx.AsyncClient, stack: LocalStack) -> None:
    assert stack.primary is not None
    stack.primary.stop()

    response = await client.get("/health/database")
    liveness = await client.get("/health")

    assert response.status_code == 503
    assert response.headers["Retry-After"].isdigit()
    assert response.json()["status"] == "unhealthy"
    assert response.json()["primary"]["reachable"] is False
    assert stack.primary.password not in response.text
    assert liveness.status_code == 200

"""/health and /health/database against the real primary and replica."""

from __future__ import annotations

import httpx

from backend_app.devstack import LocalStack


async def test_liveness_answers_without_touching_dependencies(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_database_health_reports_primary_and_replica(client: httpx.AsyncClient, stack: LocalStack) -> None:
    stack.wait_for_replicas()

    response = await client.get("/health/database")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    assert body["primary"]["status"] == "healthy"
    assert body["primary"]["role"] == "primary"
    [replica] = body["replicas"]
    assert replica["status"] == "healthy"
    assert replica["role"] == "replica"
    assert replica["lag_bytes"] >= 0
    assert replica["in_rotation"] is True
    assert stack.primary is not None
    assert stack.primary.password not in response.text
    assert "***" in body["primary"]["url"]


async def test_stopped_replica_is_degraded_not_down(client: httpx.AsyncClient, stack: LocalStack) -> None:
    stack.replicas[0].stop()

    response = await client.get("/health/database")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["primary"]["status"] == "healthy"
    assert body["replicas"][0]["status"] == "unhealthy"
    assert body["replicas"][0]["reachable"] is False


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

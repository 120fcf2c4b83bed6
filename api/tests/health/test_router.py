"""/health and /health/database against the real primary and replica."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from devtools.devstack import LocalStack
from tests.conftest import PROBE


async def test_liveness_answers_without_touching_dependencies(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_database_health_reports_every_node(client: httpx.AsyncClient, stack: LocalStack) -> None:
    stack.wait_for_replicas()

    response = await client.get("/health/database", headers=PROBE)

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

    response = await client.get("/health/database", headers=PROBE)

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

    response = await client.get("/health/database", headers=PROBE)
    liveness = await client.get("/health")

    assert response.status_code == 503
    assert response.headers["Retry-After"].isdigit()
    assert response.json()["status"] == "unhealthy"
    assert response.json()["primary"]["reachable"] is False
    assert stack.primary.password not in response.text
    assert liveness.status_code == 200


async def test_details_only_for_the_probe_token_and_administrators(
    client: httpx.AsyncClient, stack: LocalStack, make_user: Callable[..., tuple[int, str]]
) -> None:
    stack.wait_for_replicas()
    _, member = make_user("member")
    _, admin = make_user("operator", is_admin=True)
    assert stack.primary is not None

    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {member}"}):
        database = await client.get("/health/database", headers=headers)
        queues = await client.get("/health/queues", headers=headers)
        summary = database.json()
        assert set(summary) == {"status", "primary", "replicas"}
        assert set(summary["primary"]) == {"status"}
        assert [set(replica) for replica in summary["replicas"]] == [{"name", "status"}] * 2
        assert set(queues.json()) == {"status", "problems"}
        for response in (database, queues):
            assert str(stack.primary.port) not in response.text
            assert "127.0.0.1" not in response.text

    for headers in (PROBE, {"Authorization": f"Bearer {admin}"}):
        database = (await client.get("/health/database", headers=headers)).json()
        assert database["primary"]["wal_position"]
        assert "routing" in database
        assert "redis" in (await client.get("/health/queues", headers=headers)).json()


async def test_a_signed_out_administrator_sees_only_the_summary(client: httpx.AsyncClient, stack: LocalStack) -> None:
    from tests.accounts import sign_up

    user_id, admin = await sign_up(client, "nightshift")
    assert stack.primary is not None
    stack.primary.psql(f"UPDATE users SET is_admin = true WHERE id = {user_id}")
    stack.wait_for_replicas()
    assert "routing" in (await client.get("/health/database", headers=admin)).json()

    assert (await client.post("/api/auth/logout", headers=admin)).status_code == 204
    stack.wait_for_replicas()

    assert set((await client.get("/health/database", headers=admin)).json()) == {"status", "primary", "replicas"}

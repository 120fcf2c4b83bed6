"""The read/write router against a real primary and two streaming replicas.

Each probe read answers which server ran it (by port), so routing is asserted directly.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, HTTPException
from pydantic import BaseModel
from sqlalchemy import insert, select, text
from sqlalchemy.exc import DBAPIError
from starlette.requests import Request

from backend_app.core.config import Settings
from backend_app.core.read_replica import (
    POSITION_COOKIE,
    POSITION_HEADER,
    AsyncReadSession,
    AsyncWriteSession,
    DatabaseRouter,
    ReadSession,
    WriteSession,
    check_read_replica_health,
    get_database_router,
    get_db_read,
    get_db_replica,
    get_db_write,
    get_read_replica_pool_status,
    parse_lsn,
)
from backend_app.main import create_app
from backend_app.users.models import User, UserRole
from devtools.devstack import LocalStack
from tests.conftest import PROBE, terminate_connections


class NewUser(BaseModel):
    username: str
    fail_after_insert: bool = False


probe = APIRouter(prefix="/probe")


async def _server_port(session: AsyncReadSession) -> int:
    return int(await session.scalar(text("SELECT inet_server_port()")))


@probe.post("/users", status_code=201)
async def create_user(payload: NewUser, session: WriteSession) -> dict[str, int]:
    user = User(
        email=f"{payload.username}@example.com",
        username=payload.username,
        first_name="Ada",
        last_name="Lovelace",
        password_hash="not-a-real-hash",
        role=UserRole.job_seeker,
    )
    session.add(user)
    await session.flush()
    if payload.fail_after_insert:
        raise HTTPException(status_code=409, detail="rejected after the insert")
    return {"id": user.id}


@probe.get("/users/{user_id}")
async def read_user(user_id: int, session: ReadSession) -> dict[str, Any]:
    user = await session.get(User, user_id)
    return {"username": user.username if user else None, "port": await _server_port(session)}


@probe.get("/slow")
async def slow_read(session: ReadSession, seconds: float = 0.5) -> dict[str, Any]:
    await session.execute(text("SELECT pg_sleep(:seconds)"), {"seconds": seconds})
    return {"port": await _server_port(session)}


def server_names(stack: LocalStack) -> dict[int, str]:
    assert stack.primary is not None
    return {stack.primary.port: "primary"} | {replica.port: replica.name for replica in stack.replicas}


async def served_by(client: httpx.AsyncClient, stack: LocalStack, path: str = "/probe/slow?seconds=0") -> str:
    response = await client.get(path)
    assert response.status_code == 200, response.text
    return server_names(stack)[response.json()["port"]]


async def until_both_replicas_serve(client: httpx.AsyncClient, stack: LocalStack, *, seconds: float = 20) -> None:
    """Wait for both replicas to be in rotation: on a loaded machine the monitor may have
    benched them for lag when the app started (reads then go to the primary)."""
    deadline = asyncio.get_running_loop().time() + seconds
    seen: set[str] = set()
    while not {"replica1", "replica2"} <= seen:
        assert asyncio.get_running_loop().time() < deadline, f"only {sorted(seen)} served reads"
        seen = {await served_by(client, stack) for _ in range(8)}
        await asyncio.sleep(0.1)


@pytest.fixture
async def probe_app(settings: Settings) -> AsyncIterator[FastAPI]:
    application: FastAPI = create_app(settings)
    application.include_router(probe)
    async with application.router.lifespan_context(application):
        yield application


def http_client(application: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://testserver")


@pytest.fixture
async def probe_client(probe_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(probe_app) as client:
        yield client


async def replica_report(name: str) -> dict[str, Any]:
    report = await check_read_replica_health()
    [replica] = [r for r in report["replicas"] if r["name"] == name]
    return replica


# -- writes ------------------------------------------------------------------------------------


async def test_write_commits_before_the_response_and_returns_its_wal_position(
    probe_client: httpx.AsyncClient, stack: LocalStack
) -> None:
    response = await probe_client.post("/probe/users", json={"username": "grace"})

    assert response.status_code == 201
    assert stack.primary is not None
    assert stack.primary.psql("SELECT username FROM users") == "grace"
    position = response.headers[POSITION_HEADER]
    assert parse_lsn(position) is not None
    assert probe_client.cookies[POSITION_COOKIE] == position
    # The position is at or past the commit: a replica that reached it has the row.
    assert stack.primary.psql(f"SELECT pg_current_wal_insert_lsn() >= '{position}'::pg_lsn") == "t"


async def test_write_session_rolls_back_when_the_route_fails(
    probe_client: httpx.AsyncClient, stack: LocalStack
) -> None:
    response = await probe_client.post("/probe/users", json={"username": "ghost", "fail_after_insert": True})

    assert response.status_code == 409
    assert response.json() == {"detail": "rejected after the insert", "code": "conflict"}
    assert POSITION_HEADER not in response.headers
    assert stack.primary is not None
    assert stack.primary.psql("SELECT count(*) FROM users") == "0"


# -- reads and read-your-writes -----------------------------------------------------------------


async def test_reads_are_spread_over_both_replicas(probe_client: httpx.AsyncClient, stack: LocalStack) -> None:
    servers = {await served_by(probe_client, stack) for _ in range(10)}

    assert servers == {"replica1", "replica2"}


async def test_client_reads_its_own_write_while_replicas_lag(probe_app: FastAPI, stack: LocalStack) -> None:
    for replica in stack.replicas:
        replica.psql("SELECT pg_wal_replay_pause()")
    async with http_client(probe_app) as writer, http_client(probe_app) as stranger:
        created = await writer.post("/probe/users", json={"username": "ada"})
        user_path = f"/probe/users/{created.json()['id']}"

        own = await writer.get(user_path)  # sends the cookie back
        others = await stranger.get(user_path)
        by_header = await stranger.get(user_path, headers={POSITION_HEADER: created.headers[POSITION_HEADER]})

        assert own.json()["username"] == "ada"
        assert server_names(stack)[own.json()["port"]] == "primary"
        # Without the position the read goes to a replica, which has not replayed the write yet.
        assert others.json()["username"] is None
        assert server_names(stack)[others.json()["port"]] in {"replica1", "replica2"}
        assert by_header.json()["username"] == "ada"

        for replica in stack.replicas:
            replica.psql("SELECT pg_wal_replay_resume()")
        stack.wait_for_replicas()
        # Once a replica has replayed the write, the writer reads from replicas again: no timer.
        again = await writer.get(user_path)
        assert again.json()["username"] == "ada"
        assert server_names(stack)[again.json()["port"]] in {"replica1", "replica2"}
    counters = (await check_read_replica_health())["routing"]
    assert counters["primary_because_lag"] >= 1


async def test_malformed_position_header_is_400_and_malformed_cookie_is_ignored(
    probe_client: httpx.AsyncClient, stack: LocalStack
) -> None:
    bad_header = await probe_client.get("/probe/slow?seconds=0", headers={POSITION_HEADER: "yesterday"})
    probe_client.cookies.set(POSITION_COOKIE, "not-a-position")
    bad_cookie = await probe_client.get("/probe/slow?seconds=0")

    assert bad_header.status_code == 400
    assert POSITION_HEADER in bad_header.json()["detail"]
    assert bad_cookie.status_code == 200


async def test_paused_replica_leaves_the_rotation_past_the_lag_limit_and_returns(
    probe_app: FastAPI, stack: LocalStack, settings: Settings
) -> None:
    replica1 = stack.replicas[0]
    replica1.psql("SELECT pg_wal_replay_pause()")
    async with http_client(probe_app) as writer, http_client(probe_app) as reader:
        created = await writer.post("/probe/users", json={"username": "lagging"})

        async def out_for_lag() -> bool:
            report = await replica_report("replica-1")
            return report["in_rotation"] is False and "behind" in (report["out_reason"] or "")

        deadline = asyncio.get_running_loop().time() + settings.db_replica_max_lag_seconds + 5
        while not await out_for_lag():
            assert asyncio.get_running_loop().time() < deadline, await replica_report("replica-1")
            await asyncio.sleep(0.2)
        report = await replica_report("replica-1")
        assert report["replay_paused"] is True
        assert report["lag_bytes"] > 0
        assert report["banned_until"] is not None
        health = await check_read_replica_health()
        assert health["status"] == "degraded"

        assert {await served_by(reader, stack) for _ in range(10)} == {"replica2"}
        own = await writer.get(f"/probe/users/{created.json()['id']}")
        assert own.json()["username"] == "lagging"

        replica1.psql("SELECT pg_wal_replay_resume()")
        stack.wait_for_replicas()
        deadline = asyncio.get_running_loop().time() + settings.db_replica_ban_seconds + 5
        while not (await replica_report("replica-1"))["in_rotation"]:
            assert asyncio.get_running_loop().time() < deadline, await replica_report("replica-1")
            await asyncio.sleep(0.1)
        assert "replica1" in {await served_by(reader, stack) for _ in range(10)}


# -- failures ----------------------------------------------------------------------------------


async def test_replica_a_moment_behind_at_start_up_is_not_benched_for_lag(
    stack: LocalStack, settings: Settings
) -> None:
    """A write committed as the monitor starts, after a quiet spell longer than the lag limit:
    the time since the replica's last replayed commit is the quiet spell, not its lag."""
    assert stack.primary is not None
    replica1 = stack.replicas[0]
    stack.wait_for_replicas()
    await asyncio.sleep(settings.db_replica_max_lag_seconds + 0.5)  # nothing written meanwhile
    replica1.psql("SELECT pg_wal_replay_pause()")
    router = DatabaseRouter(settings)
    try:
        stack.primary.psql("CREATE TABLE written_at_start_up (id int)")
        first_check = asyncio.create_task(router.monitor.check())
        while router.primary.position is None:  # the primary's first sample is taken
            assert not first_check.done(), "the first check ended without waiting for the replica"
            await asyncio.sleep(0.005)
        # The replica replays the write a moment after the sample, as a healthy one does.
        await asyncio.to_thread(replica1.psql, "SELECT pg_wal_replay_resume()")
        await first_check

        [node] = [node for node in router.replicas if node.name == "replica-1"]
        assert node.in_rotation, node.report()
        assert node.lag_seconds == 0.0
    finally:
        replica1.psql("SELECT pg_wal_replay_resume()")
        stack.primary.psql("DROP TABLE IF EXISTS written_at_start_up")
        await router.dispose()


async def test_replica_stopped_during_reads_fails_no_read_and_comes_back(
    probe_client: httpx.AsyncClient, stack: LocalStack, settings: Settings
) -> None:
    replica1 = stack.replicas[0]
    await until_both_replicas_serve(probe_client, stack)
    reads = [asyncio.create_task(probe_client.get("/probe/slow?seconds=0.6")) for _ in range(16)]
    await asyncio.sleep(0.2)  # the reads are now running on both replicas
    await asyncio.to_thread(replica1.stop, "immediate")
    more = [await probe_client.get("/probe/slow?seconds=0") for _ in range(10)]
    responses = await asyncio.gather(*reads)

    assert [r.status_code for r in [*responses, *more]] == [200] * 26
    assert "replica1" not in {server_names(stack)[r.json()["port"]] for r in more}
    counters = (await check_read_replica_health())["routing"]
    assert counters["failovers"] >= 1
    assert (await replica_report("replica-1"))["reachable"] is False

    await asyncio.to_thread(replica1.start)
    started = asyncio.get_running_loop().time()
    while "replica1" not in {await served_by(probe_client, stack) for _ in range(4)}:
        assert asyncio.get_running_loop().time() - started < settings.db_replica_ban_seconds + 3
        await asyncio.sleep(0.1)


async def test_primary_outage_keeps_reads_and_refuses_writes_until_it_returns(
    probe_app: FastAPI, stack: LocalStack
) -> None:
    assert stack.primary is not None
    async with http_client(probe_app) as client:
        created = await client.post("/probe/users", json={"username": "before"})
        stack.wait_for_replicas()
        stack.primary.stop()

        # This client's last write is on the replicas: read-your-writes holds without the primary.
        reads = [await client.get(f"/probe/users/{created.json()['id']}") for _ in range(6)]
        write = await client.post("/probe/users", json={"username": "during"})
        health = await client.get("/health/database", headers=PROBE)
        liveness = await client.get("/health")

        assert [r.status_code for r in reads] == [200] * 6
        assert {r.json()["username"] for r in reads} == {"before"}
        assert {server_names(stack)[r.json()["port"]] for r in reads} <= {"replica1", "replica2"}
        assert write.status_code == 503
        assert write.headers["Retry-After"] == "5"
        assert "primary database is unavailable" in write.json()["detail"]
        assert health.status_code == 503
        assert health.json()["status"] == "unhealthy"
        assert liveness.status_code == 200

        stack.primary.start()
        retried = await client.post("/probe/users", json={"username": "during"})
        assert retried.status_code == 201


async def test_with_every_replica_down_reads_use_the_primary_within_a_limit(stack: LocalStack) -> None:
    settings = Settings(_env_file=None, db_primary_fallback_max_reads=1, db_primary_fallback_wait_seconds=0.2)
    application = create_app(settings)
    application.include_router(probe)
    for replica in stack.replicas:
        replica.stop()
    async with application.router.lifespan_context(application), http_client(application) as client:
        one = await served_by(client, stack)
        burst = await asyncio.gather(*(client.get("/probe/slow?seconds=0.6") for _ in range(3)))
        health = await check_read_replica_health()

    assert one == "primary"
    statuses = sorted(r.status_code for r in burst)
    assert statuses == [200, 503, 503]
    refused = next(r for r in burst if r.status_code == 503)
    assert refused.headers["Retry-After"] == "1"
    assert "read replicas are unavailable" in refused.json()["detail"]
    assert health["routing"]["primary_because_down"] >= 2
    assert health["routing"]["primary_reads_rejected"] == 2
    assert health["primary_fallback"]["limit"] == 1


async def test_promoted_replica_is_not_used_as_a_replica(probe_client: httpx.AsyncClient, stack: LocalStack) -> None:
    replica2 = stack.replicas[1]
    # Replica 1 must be in rotation first, or a lag bench at app start sends the reads to the primary.
    await until_both_replicas_serve(probe_client, stack)
    try:
        replica2._run("pg_ctl", "-D", str(replica2.data_dir), "-w", "promote")

        async def promoted_seen() -> bool:
            report = await replica_report("replica-2")
            return report["role"] == "primary" and report["in_rotation"] is False

        deadline = asyncio.get_running_loop().time() + 10
        while not await promoted_seen():
            assert asyncio.get_running_loop().time() < deadline, await replica_report("replica-2")
            await asyncio.sleep(0.1)
        assert "promoted" in (await replica_report("replica-2"))["out_reason"]
        assert {await served_by(probe_client, stack) for _ in range(8)} == {"replica1"}
    finally:
        stack.rebuild_replica(replica2)


async def test_read_sessions_refuse_writes_on_replica_and_on_primary_fallback(app: FastAPI) -> None:
    router = get_database_router()
    statement = insert(User).values(
        email="w@example.com", username="w", first_name="W", last_name="W", password_hash="x", role="employer"
    )
    async with router.read_session() as replica_session:
        assert replica_session.node_name in {"replica-1", "replica-2"}
        with pytest.raises(DBAPIError, match="read-only transaction"):
            await replica_session.execute(statement)
    for node in router.replicas:
        node.ban("test", 60)
    async with router.read_session() as primary_session:
        assert await primary_session.scalar(text("SELECT pg_is_in_recovery()")) is False
        with pytest.raises(DBAPIError, match="read-only transaction"):
            await primary_session.execute(statement)


def _request() -> Request:
    return Request({"type": "http", "method": "GET", "path": "/", "headers": [], "query_string": b""})


async def test_dependencies_yield_typed_sessions(app: FastAPI) -> None:
    assert get_db_replica is get_db_read
    write_dependency = get_db_write(_request())
    write_session = await anext(write_dependency)
    read_dependency = get_db_read(_request())
    read_session = await anext(read_dependency)
    try:
        assert isinstance(write_session, AsyncWriteSession)
        assert isinstance(write_session, AsyncReadSession), "a write session must serve where a read one is wanted"
        assert not isinstance(read_session, AsyncWriteSession)
        assert (await read_session.execute(select(User))).all() == []
    finally:
        await write_dependency.aclose()
        await read_dependency.aclose()
    pools = get_read_replica_pool_status()
    assert set(pools["replicas"]) == {"replica-1", "replica-2"}
    assert pools["primary"]["in_use"] == 0


async def test_without_replica_reads_use_the_primary(stack: LocalStack) -> None:
    assert stack.primary is not None
    settings = Settings(_env_file=None, database_url=stack.primary.url(), database_url_read=stack.primary.url())
    application = create_app(settings)
    application.include_router(probe)
    async with application.router.lifespan_context(application), http_client(application) as client:
        created = await client.post("/probe/users", json={"username": "solo"})
        response = await client.get(f"/probe/users/{created.json()['id']}")
        health = await check_read_replica_health()

    assert response.json()["username"] == "solo"
    assert server_names(stack)[response.json()["port"]] == "primary"
    assert health["status"] == "not_configured"
    assert health["replicas"] == []


async def test_position_never_moves_back_behind_what_the_client_sent(
    probe_client: httpx.AsyncClient, stack: LocalStack
) -> None:
    # As if another write of this client, committed later, answered first.
    assert stack.primary is not None
    current = parse_lsn(stack.primary.psql("SELECT pg_current_wal_insert_lsn()"))
    assert current is not None
    newer = current + 10_000_000
    newer_text = f"{newer >> 32:X}/{newer & 0xFFFFFFFF:X}"
    probe_client.cookies.set(POSITION_COOKIE, newer_text)

    response = await probe_client.post("/probe/users", json={"username": "racer"})

    assert response.status_code == 201
    assert response.headers[POSITION_HEADER] == newer_text


async def test_replica_refusing_our_credentials_is_banned_and_reads_go_on(stack: LocalStack) -> None:
    good, refusing = stack.replicas[0], stack.replicas[1]
    wrong_password = refusing.url().replace(f":{refusing.password}@", ":wrong-password@")
    settings = Settings(_env_file=None, database_url_read=f"{good.url()},{wrong_password}")
    application = create_app(settings)
    application.include_router(probe)
    async with application.router.lifespan_context(application), http_client(application) as client:
        servers = [await served_by(client, stack) for _ in range(6)]
        report = await replica_report("replica-2")

    assert set(servers) == {"replica1"}
    assert report["in_rotation"] is False
    assert report["reachable"] is False
    assert "wrong-password" not in str(report)


async def test_a_forged_read_position_is_ignored_and_the_read_stays_on_a_replica(
    client: httpx.AsyncClient, stack: LocalStack
) -> None:
    """A position no write handed out (`FFFFFFFF/FFFFFFFF`) would send every read of that
    client to the primary, outside its fallback limit; it reads as if none was sent."""
    before = (await check_read_replica_health())["routing"]
    for _ in range(3):
        response = await client.get("/api/jobs", headers={POSITION_HEADER: "FFFFFFFF/FFFFFFFF"})
        assert response.status_code == 200
    after = (await check_read_replica_health())["routing"]
    assert after["positions_ignored"] - before["positions_ignored"] == 3
    assert after["primary_because_lag"] == before["primary_because_lag"]
    assert after["replica"] - before["replica"] >= 3


async def test_pooled_replica_connections_killed_on_the_server_fail_over_without_a_failed_read(
    probe_client: httpx.AsyncClient, stack: LocalStack
) -> None:
    """Replica engines check no connection on checkout (no pre-ping): a pooled connection the
    server dropped is found dead by the read's first statement, which runs again elsewhere."""
    await until_both_replicas_serve(probe_client, stack)
    # Fill both replica pools with idle connections, then drop them all on the servers' side.
    await asyncio.gather(*(probe_client.get("/probe/slow?seconds=0.2") for _ in range(8)))
    for replica in stack.replicas:
        terminate_connections(replica, "backend_app")
    before = (await check_read_replica_health())["routing"]

    responses = [await probe_client.get("/probe/users/1") for _ in range(6)]

    assert [r.status_code for r in responses] == [200] * 6
    assert (await check_read_replica_health())["routing"]["failovers"] > before["failovers"]

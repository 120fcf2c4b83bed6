"""get_db_write / get_db_read against the real primary and streaming replica."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import APIRouter, FastAPI, HTTPException
from pydantic import BaseModel
from sqlalchemy import insert, select, text
from sqlalchemy.exc import DBAPIError

from backend_app.core.config import Settings
from backend_app.core.read_replica import (
    AsyncReadSession,
    AsyncWriteSession,
    ReadSession,
    WriteSession,
    check_read_replica_health,
    get_database_router,
    get_db_read,
    get_db_replica,
    get_db_write,
)
from backend_app.devstack import LocalStack
from backend_app.main import create_app
from backend_app.users.models import User, UserRole


class NewUser(BaseModel):
    username: str
    fail_after_insert: bool = False


probe = APIRouter(prefix="/probe")


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
async def read_user(user_id: int, session: ReadSession) -> dict[str, str | None]:
    in_recovery = await session.scalar(text("SELECT pg_is_in_recovery()"))
    user = await session.get(User, user_id)
    return {"username": user.username if user else None, "served_by": "replica" if in_recovery else "primary"}


@pytest.fixture
async def probe_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    application: FastAPI = create_app(settings)
    application.include_router(probe)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


async def test_write_is_read_back_from_the_replica(probe_client: httpx.AsyncClient, stack: LocalStack) -> None:
    created = await probe_client.post("/probe/users", json={"username": "ada"})
    assert created.status_code == 201
    stack.wait_for_replicas()

    response = await probe_client.get(f"/probe/users/{created.json()['id']}")

    assert response.status_code == 200
    assert response.json() == {"username": "ada", "served_by": "replica"}
    assert stack.replicas[0].psql("SELECT username FROM users") == "ada"


async def test_write_session_rolls_back_when_the_route_fails(
    probe_client: httpx.AsyncClient, stack: LocalStack
) -> None:
    response = await probe_client.post("/probe/users", json={"username": "ghost", "fail_after_insert": True})

    assert response.status_code == 409
    assert response.json() == {"detail": "rejected after the insert"}
    assert stack.primary is not None
    assert stack.primary.psql("SELECT count(*) FROM users") == "0"


async def test_commit_happens_before_the_response_is_sent(probe_client: httpx.AsyncClient, stack: LocalStack) -> None:
    response = await probe_client.post("/probe/users", json={"username": "grace"})

    assert response.status_code == 201
    assert stack.primary is not None
    assert stack.primary.psql("SELECT username FROM users") == "grace"


async def test_reads_fall_back_to_the_primary_when_the_replica_is_stopped(
    probe_client: httpx.AsyncClient, stack: LocalStack
) -> None:
    created = await probe_client.post("/probe/users", json={"username": "linus"})
    stack.replicas[0].stop()

    response = await probe_client.get(f"/probe/users/{created.json()['id']}")

    assert response.status_code == 200
    assert response.json() == {"username": "linus", "served_by": "primary"}
    counters = (await check_read_replica_health())["routing"]
    assert counters["primary_because_down"] == 1
    assert counters["replica_connect_failures"] == 1


async def test_read_sessions_refuse_writes_on_replica_and_on_primary_fallback(app: FastAPI) -> None:
    router = get_database_router()
    statement = insert(User).values(
        email="w@example.com", username="w", first_name="W", last_name="W", password_hash="x", role="employer"
    )
    async with router.read_session() as replica_session:
        with pytest.raises(DBAPIError, match="read-only transaction"):
            await replica_session.execute(statement)
    router.replicas.clear()
    async with router.read_session() as primary_session:
        assert await primary_session.scalar(text("SELECT pg_is_in_recovery()")) is False
        with pytest.raises(DBAPIError, match="read-only transaction"):
            await primary_session.execute(statement)


async def test_dependencies_yield_typed_sessions(app: FastAPI) -> None:
    assert get_db_replica is get_db_read
    write_dependency = get_db_write()
    write_session = await anext(write_dependency)
    read_dependency = get_db_read()
    read_session = await anext(read_dependency)
    try:
        assert isinstance(write_session, AsyncWriteSession)
        assert isinstance(write_session, AsyncReadSession), "a write session must serve where a read one is wanted"
        assert not isinstance(read_session, AsyncWriteSession)
        assert (await read_session.execute(select(User))).all() == []
    finally:
        await write_dependency.aclose()
        await read_dependency.aclose()


async def test_without_replica_reads_use_the_primary(stack: LocalStack) -> None:
    assert stack.primary is not None
    settings = Settings(_env_file=None, database_url=stack.primary.url(), database_url_read=stack.primary.url())
    application = create_app(settings)
    application.include_router(probe)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            created = await client.post("/probe/users", json={"username": "solo"})
            response = await client.get(f"/probe/users/{created.json()['id']}")
            health = await check_read_replica_health()

    assert response.json() == {"username": "solo", "served_by": "primary"}
    assert health["status"] == "not_configured"
    assert health["replicas"] == []


async def test_write_while_the_primary_is_down_is_503_with_retry_after(
    probe_client: httpx.AsyncClient, stack: LocalStack
) -> None:
    assert stack.primary is not None
    stack.primary.stop()

    response = await probe_client.post("/probe/users", json={"username": "later"})

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.json() == {"detail": "The database is temporarily unavailable; retry shortly."}

    stack.primary.start()
    retried = await probe_client.post("/probe/users", json={"username": "later"})
    assert retried.status_code == 201

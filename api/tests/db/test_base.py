"""The engine factory's one-round-trip ping: a primary connection the server dropped is
found before a write uses it, and a new connection is not pinged at all."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import text

from backend_app.db.base import create_engine
from devtools.devstack import LocalStack
from tests.conftest import terminate_connections

PING = "SELECT 1"


async def test_pooled_primary_connections_killed_on_the_server_never_fail_a_write(
    probe_client: httpx.AsyncClient, stack: LocalStack
) -> None:
    # Fill the primary's pool with idle connections, then drop them all on the server's side
    # (what a primary restart does to every pooled connection).
    filled = await asyncio.gather(
        *(probe_client.post("/probe/tasks", json={"backend": "rq", "key": f"fill-{n}"}) for n in range(6))
    )
    assert [r.status_code for r in filled] == [201] * 6
    assert stack.primary is not None
    assert terminate_connections(stack.primary, "backend_app") >= 1

    writes = [await probe_client.post("/probe/tasks", json={"backend": "rq", "key": f"after-{n}"}) for n in range(6)]

    assert [r.status_code for r in writes] == [201] * 6, [r.text for r in writes]


async def test_the_ping_is_one_statement_and_a_new_connection_skips_it(stack: LocalStack) -> None:
    assert stack.primary is not None
    engine = create_engine(
        stack.primary.url().replace("postgresql://", "postgresql+asyncpg://", 1),
        pool_size=1,
        max_overflow=0,
        application_name="ping-test",
    )
    sent: list[str] = []  # every statement the driver sends, in order
    try:
        async with engine.connect() as connection:  # a new connection: not pinged
            raw = await connection.get_raw_connection()
            raw.driver_connection.add_query_logger(lambda record: sent.append(record.query))
            backend_pid = await connection.scalar(text("SELECT pg_backend_pid()"))
            await connection.rollback()
        await asyncio.sleep(0.05)  # the logger is called soon after each statement
        assert PING not in sent, sent
        for _ in range(3):
            sent.clear()
            async with engine.connect() as connection:  # the same pooled connection, pinged
                assert await connection.scalar(text("SELECT pg_backend_pid()")) == backend_pid
                await connection.rollback()
            await asyncio.sleep(0.05)
            # The ping, then the session's own transaction. SQLAlchemy's pool_pre_ping would
            # have sent BEGIN; ; ROLLBACK; first: three round trips.
            assert sent[0] == PING, sent
            assert sum(statement.startswith("BEGIN") for statement in sent) == 1, sent
            assert sent.count(PING) == 1, sent

        # A connection the server dropped is replaced at checkout.
        assert terminate_connections(stack.primary, "ping-test") == 1
        async with engine.connect() as connection:
            assert await connection.scalar(text("SELECT pg_backend_pid()")) != backend_pid
    finally:
        await engine.dispose()

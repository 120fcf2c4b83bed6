"""The relays' NOTIFY: sent by the API process's wakeup after the commits that recorded tasks,
by the recording statement itself where no wakeup runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncpg
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from backend_app.core.config import Settings
from backend_app.db.lifecycle import close_database, get_database_router, init_database
from backend_app.outbox import service as outbox
from backend_app.outbox.repository import NOTIFY_CHANNEL
from backend_app.outbox.wakeup import APPLICATION_NAME, RelayWakeup
from backend_app.tasks.models import TaskBackend
from devtools.devstack import LocalStack
from tests.conftest import terminate_connections


@dataclass
class Listener:
    """A LISTEN on the primary, as a relay has: each NOTIFY's sender (a backend pid)."""

    connection: asyncpg.Connection
    senders: list[int] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def next_sender(self, seconds: float = 5) -> int:
        await asyncio.wait_for(self.arrived.wait(), seconds)
        self.arrived.clear()
        return self.senders[-1]


@pytest.fixture
async def listener(stack: LocalStack) -> AsyncIterator[Listener]:
    assert stack.primary is not None
    connection = await asyncpg.connect(stack.primary.url())
    listening = Listener(connection)

    def heard(_connection: object, pid: int, _channel: str, _payload: str) -> None:
        listening.senders.append(pid)
        listening.arrived.set()

    await connection.add_listener(NOTIFY_CHANNEL, heard)
    yield listening
    await connection.close()


async def record_a_task(key: str) -> tuple[str, int]:
    """Commit one recorded task; returns its id and the pid of the backend that committed it."""
    async with get_database_router().write_session() as session:
        pid = int(await session.scalar(text("SELECT pg_backend_pid()")) or 0)
        task_id = await outbox.add_named(
            session=session,
            backend=TaskBackend.rq,
            queue="analytics",
            task="tests.worker_tasks.record_effect_job",
            kwargs={"key": key},
        )
    return task_id, pid


async def test_an_api_commit_that_recorded_a_task_wakes_the_relays_from_another_connection_once_visible(
    app: FastAPI, listener: Listener, stack: LocalStack
) -> None:
    task_id, committing_pid = await record_a_task("woken")

    sender = await listener.next_sender()

    # Not the committing transaction: it never held the notification queue's lock.
    assert sender != committing_pid
    # By the time a relay hears it, the task is there to claim.
    count = await listener.connection.fetchval("SELECT count(*) FROM outbox_messages WHERE task_id = $1", task_id)
    assert count == 1


async def record_a_task_then_fail() -> None:
    async with get_database_router().write_session() as session:
        await outbox.add_named(
            session=session, backend=TaskBackend.rq, queue="analytics", task="tests.worker_tasks.record_effect_job"
        )
        raise RuntimeError("changed my mind")


async def test_a_rolled_back_recording_wakes_nobody(app: FastAPI, listener: Listener) -> None:
    with pytest.raises(RuntimeError, match="changed my mind"):
        await record_a_task_then_fail()
    # A later commit on a session that recorded nothing wakes nobody either.
    async with get_database_router().write_session() as session:
        await session.execute(text("SELECT 1"))

    with pytest.raises(TimeoutError):
        await listener.next_sender(seconds=1.5)
    assert listener.senders == []


async def test_commits_made_while_a_notify_is_due_share_one(stack: LocalStack, listener: Listener) -> None:
    assert stack.primary is not None
    wakeup = RelayWakeup(stack.primary.url().replace("postgresql://", "postgresql+asyncpg://"))
    running = asyncio.create_task(wakeup.run())
    try:
        for _ in range(100):
            wakeup.commit_recorded_tasks()
        await listener.next_sender()
        await asyncio.sleep(0.5)  # room for a second NOTIFY, if there were one to come

        assert wakeup.notifications_sent == 1
        assert len(listener.senders) == 1
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def test_a_commit_in_a_process_without_a_wakeup_notifies_itself(settings: Settings, listener: Listener) -> None:
    init_database(settings)
    try:
        _, committing_pid = await record_a_task("self-notified")
    finally:
        await close_database()

    assert await listener.next_sender() == committing_pid


async def test_an_unreachable_primary_is_logged_once_and_the_wakeup_goes_on(
    unused_tcp_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    wakeup = RelayWakeup(f"postgresql+asyncpg://nobody:secret@127.0.0.1:{unused_tcp_port}/nothing")
    running = asyncio.create_task(wakeup.run())
    try:
        with caplog.at_level(logging.WARNING, logger="backend_app.outbox.wakeup"):
            for _ in range(3):
                wakeup.commit_recorded_tasks()
                await asyncio.sleep(0.3)

        warnings = [r.getMessage() for r in caplog.records if r.name == "backend_app.outbox.wakeup"]
        assert warnings == [
            "could not wake the outbox relays (ConnectionRefusedError); they find the new tasks at their next poll"
        ]
        assert not running.done()
        assert wakeup.notifications_sent == 0
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def test_after_its_connection_is_dropped_the_wakeup_reconnects(stack: LocalStack, listener: Listener) -> None:
    assert stack.primary is not None
    wakeup = RelayWakeup(stack.primary.url().replace("postgresql://", "postgresql+asyncpg://"))
    running = asyncio.create_task(wakeup.run())
    try:
        wakeup.commit_recorded_tasks()
        await listener.next_sender()
        assert terminate_connections(stack.primary, APPLICATION_NAME) == 1

        # The NOTIFY on the dropped connection may be lost (the relay's poll covers it); the
        # next one goes out on a new connection.
        heard = 0
        for _ in range(2):
            wakeup.commit_recorded_tasks()
            with contextlib.suppress(TimeoutError):
                await listener.next_sender(seconds=2)
                heard += 1
        assert heard >= 1
        await asyncio.sleep(0.2)  # the wakeup counts a NOTIFY once the server has answered it
        assert wakeup.notifications_sent == 1 + heard
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)

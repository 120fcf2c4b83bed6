"""Waking the relays after a commit that recorded tasks, from outside that transaction.

A transaction that sends NOTIFY holds PostgreSQL's notification-queue lock from its pre-commit
to the end of its commit, WAL flush included. So transactions that notify commit one at a time,
and each waits for its own flush: no group commit. That was a tenth of `POST /api/messages`
over HTTP at 32 connections (issue 15).

So an API process runs a `RelayWakeup` for its lifespan. A commit that recorded tasks only marks
the wakeup due. The wakeup then sends one NOTIFY, however many commits came while the last one
was in flight, on a connection of its own: one round trip, no BEGIN or COMMIT, and no request's
pool connection taken. It is sent after those commits, so a relay that wakes on it finds their
rows.

The NOTIFY is only a hint: the relay also polls every OUTBOX_POLL_INTERVAL. So a NOTIFY that is
never sent only delays the publish by up to that interval: the process killed between commit
and NOTIFY, the primary unreachable, a commit during shutdown. Processes without a running
wakeup (workers, the relay, scripts) notify inside the recording statement, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

from backend_app.core.config import to_driver_dsn
from backend_app.outbox import repository as outbox_repository

logger = logging.getLogger(__name__)

# Time for one NOTIFY, connection included; longer means the primary is unreachable.
SEND_TIMEOUT_SECONDS = 5.0
APPLICATION_NAME = "backend_app-relay-wakeup"

_running: RelayWakeup | None = None


def running_wakeup() -> RelayWakeup | None:
    """This process's wakeup while its lifespan runs one, else None (notify in the transaction)."""
    return _running


class RelayWakeup:
    def __init__(self, database_url: str) -> None:
        self._dsn = to_driver_dsn(database_url)
        # Its own connection, kept, outside the pools: a NOTIFY is then one round trip and
        # little Python (the API process's CPU is the request path's limit).
        self._connection: asyncpg.Connection | None = None
        self._due = asyncio.Event()
        self.notifications_sent = 0
        self._failing = False

    def commit_recorded_tasks(self) -> None:
        self._due.set()

    async def run(self) -> None:
        """Send a NOTIFY whenever commits are due one, until cancelled (then once more if due)."""
        global _running
        _running = self
        try:
            while True:
                await self._due.wait()
                await self._send()
        finally:
            if _running is self:
                _running = None
            try:
                if self._due.is_set():
                    # A commit just before shutdown: worth one try, the relay's poll covers a failure.
                    await self._send()
            finally:
                if self._connection is not None:
                    with contextlib.suppress(Exception):
                        await self._connection.close(timeout=2)

    async def _send(self) -> None:
        # Cleared before sending: a commit made while this NOTIFY is in flight gets the next one.
        self._due.clear()
        try:
            async with asyncio.timeout(SEND_TIMEOUT_SECONDS):
                if self._connection is None or self._connection.is_closed():
                    self._connection = await asyncpg.connect(
                        self._dsn, server_settings={"application_name": APPLICATION_NAME}
                    )
                await outbox_repository.notify_relays(self._connection)
        except Exception as error:
            # Possibly half-open: never used again (SQLAlchemy's pools invalidate theirs alike).
            if self._connection is not None:
                self._connection.terminate()
                self._connection = None
            if not self._failing:
                logger.warning(
                    "could not wake the outbox relays (%s); they find the new tasks at their next poll",
                    type(error).__name__,
                )
            self._failing = True
            return
        if self._failing:
            logger.info("waking the outbox relays again")
            self._failing = False
        self.notifications_sent += 1

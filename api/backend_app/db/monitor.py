"""What the router knows about each database node, and the background checks that keep it true.

Every `DB_HEALTH_CHECK_INTERVAL` the monitor asks each node, over its own connection (never
one from the request pools, so a busy pool cannot look like a dead node):

- the primary: is it really a primary, and where its WAL ends (`pg_current_wal_lsn()`);
- each replica: is it still in recovery (a promoted node is not used as a replica), and how
  far it has replayed (`pg_last_wal_replay_lsn()`).

Lag in bytes is the primary's position minus the replica's. Lag in seconds is how long ago
the primary was at a position the replica has not reached yet, read from the monitor's own
history of primary positions. That stays 0 while the primary is idle, unlike "time since the
last replayed commit", which grows whenever nothing is written.

A replica that fails a check, or is beyond `DB_REPLICA_MAX_LAG_SECONDS` or
`DB_REPLICA_MAX_LAG_BYTES`, leaves the rotation for at least `DB_REPLICA_BAN_SECONDS`, and
returns only when a check after that passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from backend_app.core.config import Settings, mask_url, to_driver_dsn
from backend_app.db.position import format_lsn, parse_lsn

logger = logging.getLogger(__name__)

PRIMARY_QUERY = (
    "SELECT pg_is_in_recovery(),"
    " (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END)::text"
)
REPLICA_QUERY = (
    "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text,"
    " CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() END,"
    " EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8"
)

# How long the first check waits for a replica to replay the primary's first sample (see
# ReplicaMonitor._settle_first_round), and how often it looks.
FIRST_ROUND_SETTLE_SECONDS = 0.5
FIRST_ROUND_SETTLE_STEP = 0.02


def engine_pool_status(engine: AsyncEngine) -> dict[str, int]:
    pool: Any = engine.pool
    return {
        "size": pool.size(),
        "in_use": pool.checkedout(),
        "idle": pool.checkedin(),
        # SQLAlchemy counts overflow negatively while the pool is below its size.
        "overflow": max(pool.overflow(), 0),
    }


def _wall_clock(monotonic_time: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=monotonic_time - time.monotonic())).isoformat()


@dataclass(eq=False)
class DatabaseNode:
    """One PostgreSQL server: its request pool and the last thing the monitor learnt about it."""

    name: str
    url: str
    engine: AsyncEngine
    expected_role: str  # "primary" or "replica"
    reachable: bool | None = None  # None: not checked yet
    role: str | None = None
    latency_ms: float | None = None
    # The primary's WAL end, or how far a replica has replayed, as an integer LSN.
    position: int | None = None
    lag_bytes: int | None = None
    lag_seconds: float | None = None
    replay_paused: bool | None = None
    error: str | None = None
    checked_at: float | None = None  # monotonic
    in_rotation: bool = True
    banned_until: float = 0.0  # monotonic
    out_reason: str | None = None
    out_for_lag: bool = False
    outstanding: int = 0  # read sessions open on it now
    served: int = 0  # read sessions placed on it since start
    bans: int = 0  # times it left the rotation since start

    @property
    def masked_url(self) -> str:
        return mask_url(self.url)

    def ban(self, reason: str, seconds: float) -> None:
        """Out of rotation for at least `seconds`; a passing check after that brings it back."""
        self.out_reason = reason
        if self.in_rotation:
            # Failed checks while it is out do not extend the ban: a replica that comes back
            # returns at the first passing check after the ban, not a ban after its last failure.
            self.in_rotation = False
            self.bans += 1
            self.banned_until = time.monotonic() + seconds
            logger.warning(
                "replica %s (%s) out of rotation for at least %.1fs: %s", self.name, self.masked_url, seconds, reason
            )

    def report(self) -> dict[str, Any]:
        now = time.monotonic()
        report: dict[str, Any] = {
            "name": self.name,
            "url": self.masked_url,
            "role": self.role,
            "reachable": self.reachable,
            "latency_ms": self.latency_ms,
            "checked_seconds_ago": None if self.checked_at is None else round(now - self.checked_at, 3),
            "pool": engine_pool_status(self.engine),
        }
        if self.error:
            report["error"] = self.error
        if self.expected_role == "primary":
            report["wal_position"] = None if self.position is None else format_lsn(self.position)
            report["status"] = "healthy" if self.reachable and self.role == "primary" else "unhealthy"
            return report
        report.update(
            replay_position=None if self.position is None else format_lsn(self.position),
            lag_bytes=self.lag_bytes,
            lag_seconds=self.lag_seconds,
            replay_paused=self.replay_paused,
            in_rotation=self.in_rotation,
            banned_until=_wall_clock(self.banned_until) if not self.in_rotation else None,
            out_reason=None if self.in_rotation else self.out_reason,
            reads_in_progress=self.outstanding,
            reads_served=self.served,
            status="healthy" if self.in_rotation and self.reachable is not False else "unhealthy",
        )
        return report


class NodeProbe:
    """The monitor's own connection to one node, reopened after any failure."""

    def __init__(self, node: DatabaseNode, timeout: float) -> None:
        self.node = node
        self.timeout = timeout
        self.dsn = to_driver_dsn(node.url)
        self._connection: asyncpg.Connection | None = None

    async def fetch(self, query: str) -> asyncpg.Record:
        try:
            async with asyncio.timeout(self.timeout):
                if self._connection is None or self._connection.is_closed():
                    self._connection = await asyncpg.connect(
                        self.dsn, timeout=self.timeout, server_settings={"application_name": "backend_app-monitor"}
                    )
                record = await self._connection.fetchrow(query)
        except BaseException:
            await self.close()
            raise
        assert record is not None
        return record

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed():
            connection.terminate()  # never wait on a server that stopped answering

    def forget(self) -> None:
        """In a forked child: drop the parent's connection without touching its socket."""
        self._connection = None


class ReplicaMonitor:
    def __init__(self, settings: Settings, primary: DatabaseNode, replicas: list[DatabaseNode]) -> None:
        self.settings = settings
        self.primary = primary
        self.replicas = replicas
        self._probes = {node.name: NodeProbe(node, settings.db_health_check_timeout) for node in (primary, *replicas)}
        # (monotonic time, primary WAL end) samples: lag in seconds is read from here.
        self._history: deque[tuple[float, int]] = deque()
        self._history_seconds = max(30.0, 3 * settings.db_replica_max_lag_seconds)
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self.rounds = 0
        self.last_round_at: float | None = None

    # -- running -----------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True while the background loop runs on the current event loop (the API's)."""
        task = self._task
        return task is not None and not task.done() and task.get_loop() is asyncio.get_running_loop()

    def ensure_running(self) -> None:
        """Start the background loop on the running event loop, once (the API lifespan)."""
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="replica-monitor")

    async def refresh_if_stale(self) -> None:
        """Without a background loop (workers, whose loop only runs during a task): check
        inline when the last round is older than the interval. A background task there would
        have its timeouts expire while the loop is stopped between tasks."""
        last = self.last_round_at
        if last is None or time.monotonic() - last >= self.settings.db_health_check_interval:
            await self.check()

    def _current_lock(self) -> asyncio.Lock:
        # One lock per event loop: a lock held by a check abandoned on a closed loop (a test's,
        # a forked worker's) must not block this loop's checks forever.
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock

    async def _run(self) -> None:
        while True:
            try:
                await self.check()
            except Exception:
                # A bug here must not stop the checks for good: log it and try again.
                logger.exception("replica health check round failed")
            await asyncio.sleep(self.settings.db_health_check_interval)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done() and not task.get_loop().is_closed():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                await task
        for probe in self._probes.values():
            await probe.close()

    def forget(self) -> None:
        self._task = None
        for probe in self._probes.values():
            probe.forget()

    # -- one round ------------------------------------------------------------------------

    async def check(self) -> None:
        """Check every node now (concurrently) and update the rotation."""
        async with self._current_lock():
            results = await asyncio.gather(
                self._probe(self.primary, PRIMARY_QUERY),
                *(self._probe(node, REPLICA_QUERY) for node in self.replicas),
            )
            now = time.monotonic()
            primary_row, *replica_rows = results
            self._update_primary(primary_row, now)
            if len(self._history) == 1 and self._history[0][0] == now:
                pairs = zip(self.replicas, replica_rows, strict=True)
                replica_rows = await asyncio.gather(*(self._settle_first_round(node, row) for node, row in pairs))
                now = time.monotonic()
            for node, row in zip(self.replicas, replica_rows, strict=True):
                self._update_replica(node, row, now)
            self.rounds += 1
            self.last_round_at = now

    async def _settle_first_round(self, node: DatabaseNode, row: asyncpg.Record | None) -> asyncpg.Record | None:
        """Give a replica behind the very first primary sample a moment to replay it.

        With no history, a replica behind the primary is judged by the time since its last
        replayed commit. A write committed just as the monitor starts (a deploy after a quiet
        spell) leaves a healthy replica a few milliseconds behind, and that figure is then the
        quiet spell, not the lag: re-read such a replica for up to FIRST_ROUND_SETTLE_SECONDS.
        A replica really behind is still judged as before, at most that much later.
        """
        first_position = self._history[0][1]
        deadline = time.monotonic() + FIRST_ROUND_SETTLE_SECONDS
        while row is not None and row[0] and (parse_lsn(row[1]) or 0) < first_position:
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(FIRST_ROUND_SETTLE_STEP)
            row = await self._probe(node, REPLICA_QUERY)
        return row

    async def _probe(self, node: DatabaseNode, query: str) -> asyncpg.Record | None:
        started = time.perf_counter()
        try:
            row = await self._probes[node.name].fetch(query)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            node.reachable = False
            node.error = type(error).__name__
            node.latency_ms = None
            return None
        node.reachable = True
        node.error = None
        node.latency_ms = round((time.perf_counter() - started) * 1000, 2)
        return row

    def _update_primary(self, row: asyncpg.Record | None, now: float) -> None:
        node = self.primary
        node.checked_at = now
        if row is None:
            return
        in_recovery, lsn = row
        node.role = "replica" if in_recovery else "primary"
        node.position = parse_lsn(lsn)
        if node.role == "primary" and node.position is not None:
            self._history.append((now, node.position))
            # Keep one sample older than the window: after an idle spell (a worker between
            # tasks) lag is still measured against a known earlier position.
            while len(self._history) > 1 and now - self._history[1][0] > self._history_seconds:
                self._history.popleft()

    def lag_seconds(self, replayed: int, now: float, replay_age: float | None) -> float | None:
        """How long ago the primary was at a position this replica has not replayed yet.

        When the replica is behind even the oldest sample (the history is young: just started,
        or trimmed), that age is only a lower bound; the time since its last replayed commit
        is then used too, as it is a fair figure when WAL has been waiting to be replayed (the
        first check gives a replica that is only a moment behind time to catch up first).
        """
        if not self._history:
            return None
        oldest_at, oldest_position = self._history[0]
        if oldest_position > replayed:
            return round(max(now - oldest_at, replay_age or 0.0), 3)
        for sampled_at, primary_position in self._history:
            if primary_position > replayed:
                return round(now - sampled_at, 3)
        return 0.0

    def _update_replica(self, node: DatabaseNode, row: asyncpg.Record | None, now: float) -> None:
        s = self.settings
        node.checked_at = now
        problem: str | None = None
        if row is None:
            problem = f"unreachable ({node.error})"
            # Unknown, not the last figures seen: a stale 0 would read as "caught up".
            node.lag_bytes = node.lag_seconds = None
        else:
            in_recovery, replay_lsn, paused, replay_age = row
            node.role = "replica" if in_recovery else "primary"
            node.replay_paused = paused
            node.position = parse_lsn(replay_lsn) if in_recovery else None
            primary_fresh = self.primary.reachable and self.primary.role == "primary"
            if node.role != "replica":
                problem = "not in recovery: promoted to a primary, not used as a replica"
                node.lag_bytes = node.lag_seconds = None
            elif primary_fresh and node.position is not None and self.primary.position is not None:
                node.lag_bytes = max(self.primary.position - node.position, 0)
                node.lag_seconds = self.lag_seconds(node.position, now, replay_age)
                if node.lag_bytes > s.db_replica_max_lag_bytes:
                    problem = f"{node.lag_bytes} bytes behind (limit {s.db_replica_max_lag_bytes})"
                elif node.lag_seconds is not None and node.lag_seconds > s.db_replica_max_lag_seconds:
                    problem = f"{node.lag_seconds:.1f}s behind (limit {s.db_replica_max_lag_seconds:g}s)"
            else:
                # With the primary out of reach there is nothing to compare with; replicas
                # cannot fall further behind a primary that is not writing.
                node.lag_bytes = node.lag_seconds = None
        lag_unknown = row is not None and node.role == "replica" and node.lag_bytes is None
        if problem is not None:
            node.ban(problem, s.db_replica_ban_seconds)
            node.out_for_lag = "behind" in problem
        elif node.out_for_lag and lag_unknown:
            pass  # out for lag, and the primary cannot be measured now: no evidence it caught up
        elif not node.in_rotation and now >= node.banned_until:
            node.in_rotation = True
            node.out_for_lag = False
            logger.info("replica %s (%s) back in rotation (was: %s)", node.name, node.masked_url, node.out_reason)
            node.out_reason = None

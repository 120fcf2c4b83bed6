"""The DatabaseRouter: writes on the primary, reads on streaming replicas.

How a read is placed (READ_REPLICA_SETUP.md has the operator's version):

1. Replicas in rotation (see `monitor`), least busy first, ties taken in turn.
2. Read-your-writes: a write request's response carries its commit's WAL position
   (`X-DB-Position` header and `db_position` cookie). A read that sends it back goes to a
   replica known (or checked, one round trip) to have replayed that far, else to the
   primary. Tasks recorded by the write carry the position to the workers the same way.
3. No replica in rotation: the primary, at most `DB_PRIMARY_FALLBACK_MAX_READS` at once.
4. A replica connection that fails mid-session (before the statement returned anything)
   is banned and the statement is re-run on another replica or the primary.
5. The primary down: reads stay on replicas (stale rather than failing); writes get 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from backend_app.core.config import Settings
from backend_app.db.base import create_engine
from backend_app.db.counters import RoutingCounters
from backend_app.db.errors import (
    CONNECTION_ERRORS,
    PrimaryUnavailableError,
    ReadCapacityError,
    is_connection_error,
    is_read_only_primary,
    is_recovery_conflict,
)
from backend_app.db.monitor import DatabaseNode, ReplicaMonitor, engine_pool_status
from backend_app.db.position import current_wal_insert_position, parse_lsn, plausible, required_position
from backend_app.db.sessions import AsyncReadSession, AsyncWriteSession

logger = logging.getLogger(__name__)


class DatabaseRouter:
    """The engines for one process: the primary, a read-only view of it, and the replicas."""

    def __init__(self, settings: Settings) -> None:
        s = self.settings = settings
        self.counters = RoutingCounters()
        self.primary = DatabaseNode(
            "primary",
            s.database_url,
            create_engine(s.database_url, pool_size=s.db_pool_size, max_overflow=s.db_max_overflow),
            expected_role="primary",
        )
        read_pool: dict[str, Any] = {
            "pool_size": s.db_read_pool_size,
            "max_overflow": s.db_read_max_overflow,
            "pool_recycle": s.db_read_pool_recycle,
            "connect_timeout": s.db_read_connect_timeout,
            "read_only": True,
        }
        self.primary_read_engine = create_engine(s.database_url, **read_pool)
        # No pre-ping on replicas: a read session on one re-runs a statement whose connection
        # turns out dead on another node (AsyncReadSession._with_failover, after banning this
        # one), so the ping's three round trips per checkout buy nothing there. The primary's
        # engines keep it: writes are never re-run, and primary_read_session() has no failover.
        # Nor BEGIN/ROLLBACK on replicas (autocommit): a read session there runs in READ
        # COMMITTED, where every statement takes its own snapshot anyway, and a hot standby
        # refuses writes with or without a transaction (default_transaction_read_only too).
        self.replicas = [
            DatabaseNode(
                f"replica-{index}",
                url,
                create_engine(url, **read_pool, pre_ping=False, autocommit=True),
                expected_role="replica",
            )
            for index, url in enumerate(s.database_url_read, start=1)
        ]
        self.monitor = ReplicaMonitor(settings, self.primary, self.replicas)
        self._turn = itertools.count()
        self._fallback_slots = asyncio.Semaphore(s.db_primary_fallback_max_reads)
        self._fallback_waiting = 0
        self._fallback_in_use = 0

    # -- writes -----------------------------------------------------------------------------

    @asynccontextmanager
    async def write_session(
        self, *, record_position: Callable[[int], None] | None = None
    ) -> AsyncIterator[AsyncWriteSession]:
        """A primary session that commits when the block succeeds and rolls back otherwise.

        `record_position` receives the commit's WAL position (for read-your-writes).
        A primary that cannot be reached raises PrimaryUnavailableError.
        """
        try:
            async with self.primary.engine.connect() as connection:
                async with AsyncWriteSession(bind=connection, expire_on_commit=False) as session:
                    try:
                        yield session
                    except BaseException as error:
                        await session.rollback()
                        # A failure of this session's own connection is the primary's; anything
                        # else (a route's 4xx, a read session's 503, Redis) passes through as it is.
                        if isinstance(error, Exception) and is_connection_error(error) and connection.invalidated:
                            raise PrimaryUnavailableError(f"primary unavailable: {type(error).__name__}") from error
                        raise
                    await session.commit()
                if record_position is not None:
                    position = await self._commit_position(connection)
                    if position is not None:
                        record_position(position)
        except PrimaryUnavailableError:
            raise
        except (DBAPIError, *CONNECTION_ERRORS) as error:
            # Raised by connect, commit or rollback (errors from the block were handled above).
            if is_connection_error(error) or is_read_only_primary(error):
                raise PrimaryUnavailableError(f"primary unavailable: {type(error).__name__}") from error
            raise

    @staticmethod
    async def _commit_position(connection: AsyncConnection) -> int | None:
        # After COMMIT, on the same connection and outside any transaction (one round trip):
        # the insert position is at or past the end of the commit record just written.
        try:
            position = await current_wal_insert_position(connection)
        except Exception as error:
            # The write is committed: the client gets its 2xx, only without read-your-writes.
            if not is_connection_error(error) and not isinstance(error, DBAPIError):
                raise
            logger.warning("committed, but could not read the WAL position (%s)", type(error).__name__)
            return None
        return parse_lsn(position)

    # -- reads ------------------------------------------------------------------------------

    @asynccontextmanager
    async def read_session(self, *, position: int | None = None) -> AsyncIterator[AsyncReadSession]:
        """A read-only session placed by the rules in the module docstring."""
        if self.replicas and not self.monitor.running:
            await self.monitor.refresh_if_stale()
        session = AsyncReadSession(expire_on_commit=False)
        session._router = self
        session._position = position if position is not None else required_position()
        try:
            await self._place(session, exclude=())
            yield session
        finally:
            await self._close_read_session(session)

    async def _close_read_session(self, session: AsyncReadSession) -> None:
        try:
            await session.close()
        except Exception as error:
            # The reads are done; only the ROLLBACK of a read-only transaction was lost with a
            # connection that just died. The caller has its data: no reason to fail it.
            if not is_connection_error(error):
                raise
            node = session._node
            if node is not None and node is not self.primary:
                self._replica_failed(node, error)
            logger.info("read session on %s closed with its connection gone (%s)", node and node.name, error)
        finally:
            self._release(session)

    @asynccontextmanager
    async def primary_read_session(self) -> AsyncIterator[AsyncReadSession]:
        """A read-only session on the primary, for the rare read that must not be stale."""
        async with AsyncReadSession(bind=self.primary_read_engine, expire_on_commit=False) as session:
            yield session

    def _candidates(self, exclude: tuple[DatabaseNode, ...]) -> list[DatabaseNode]:
        """Replicas in rotation, least busy first; equal ones in turn."""
        nodes = [node for node in self.replicas if node.in_rotation and node not in exclude]
        if len(nodes) > 1:
            start = next(self._turn) % len(nodes)
            nodes = nodes[start:] + nodes[:start]
            nodes.sort(key=lambda node: node.outstanding)
        return nodes

    async def _place(self, session: AsyncReadSession, exclude: tuple[DatabaseNode, ...]) -> None:
        if not self.replicas:
            self.counters.primary_no_replica += 1
            await self._bind(session, None, self.primary_read_engine)
            return
        position = session._position
        if not plausible(position, self.primary.position):
            self.counters.positions_ignored += 1  # never handed out: read as if none was sent
            position = None
        candidates = self._candidates(exclude)
        if position is not None and candidates:
            # Read-your-writes, never skipped on a cached "primary down": replicas known to be
            # past the position, then one asked directly, then the primary itself.
            for node in candidates:
                if node.position is not None and node.position >= position and await self._try_replica(session, node):
                    return
            behind = [node for node in candidates if node.in_rotation and (node.position or 0) < position]
            if behind and await self._place_if_replayed(session, behind[0], position):
                return
            self.counters.primary_because_lag += 1
            # A position past the primary's last sample is a write from the last moment, or a
            # client's invention: the primary serves it within its fallback share only.
            beyond_primary = self.primary.position is not None and position > self.primary.position
            if await self._place_on_primary(session, limited=beyond_primary):
                return
            # The primary failed on this very request: a stale replica beats an error.
            self.counters.stale_because_primary_down += 1
            candidates = self._candidates(exclude)
        for node in candidates:
            if await self._try_replica(session, node):
                return
        # Nothing in rotation answered: the primary, within its fallback share.
        self.counters.primary_because_down += 1
        if await self._place_on_primary(session, limited=True):
            return
        # The primary is down too: a replica out of rotation for lag still beats an error.
        reachable = [n for n in self.replicas if n not in exclude and n.reachable and n.role == "replica"]
        for node in sorted(reachable, key=lambda n: -(n.position or 0)):
            if await self._try_replica(session, node):
                self.counters.stale_because_primary_down += 1
                return
        raise ConnectionError("no database node can serve reads")

    async def _try_replica(self, session: AsyncReadSession, node: DatabaseNode) -> bool:
        if not await self._connect_replica(session, node):
            return False
        self._count_replica_read(node)
        return True

    def _count_replica_read(self, node: DatabaseNode) -> None:
        self.counters.replica += 1
        node.served += 1

    async def _connect_replica(self, session: AsyncReadSession, node: DatabaseNode) -> bool:
        try:
            await self._bind(session, node, node.engine)
        except PoolTimeoutError:
            return False  # busy, not down: every pooled connection is in use; no ban
        except Exception as error:
            # Unreachable, or refusing us (password, pg_hba, missing database): either way
            # this replica cannot serve; the others can.
            if not is_connection_error(error) and not isinstance(error, DBAPIError):
                raise
            self._replica_failed(node, error)
            return False
        return True

    async def _place_if_replayed(self, session: AsyncReadSession, node: DatabaseNode, position: int) -> bool:
        if not await self._connect_replica(session, node):
            return False
        try:
            replayed = parse_lsn(await AsyncSession.scalar(session, text("SELECT pg_last_wal_replay_lsn()::text")))
        except Exception as error:
            if not is_connection_error(error):
                raise
            self._replica_failed(node, error)
            replayed = None
        if replayed is not None:
            node.position = max(node.position or 0, replayed)
            if replayed >= position:
                self._count_replica_read(node)
                return True
        await self._unbind(session)
        return False

    async def _place_on_primary(self, session: AsyncReadSession, *, limited: bool) -> bool:
        """Bind to the primary's read-only pool; False if the primary cannot be reached."""
        if limited:
            await self._take_fallback_slot(session)
        try:
            await self._bind(session, None, self.primary_read_engine)
        except Exception as error:
            self._release(session)
            if not is_connection_error(error) or isinstance(error, PoolTimeoutError):
                raise
            return False
        return True

    async def _take_fallback_slot(self, session: AsyncReadSession) -> None:
        if session._fallback_slot:
            return  # kept through a failover
        self._fallback_waiting += 1
        try:
            async with asyncio.timeout(self.settings.db_primary_fallback_wait_seconds):
                await self._fallback_slots.acquire()
        except TimeoutError:
            self.counters.primary_reads_rejected += 1
            raise ReadCapacityError("read replicas are out and the primary is at its fallback read limit") from None
        finally:
            self._fallback_waiting -= 1
        session._fallback_slot = True
        self._fallback_in_use += 1

    async def _bind(self, session: AsyncReadSession, node: DatabaseNode | None, engine: AsyncEngine) -> None:
        session.bind = engine
        session.sync_session.bind = engine.sync_engine
        session._node = node if node is not None else self.primary
        if node is not None:
            node.outstanding += 1
        # Check a connection out now, so an unreachable node is skipped before the route runs.
        try:
            await session.connection()
        except BaseException:
            await self._unbind(session)
            raise

    async def _unbind(self, session: AsyncReadSession) -> None:
        with contextlib.suppress(*CONNECTION_ERRORS, DBAPIError):
            await AsyncSession.close(session)
        self._release(session, keep_slot=True)

    def _release(self, session: AsyncReadSession, *, keep_slot: bool = False) -> None:
        node, session._node = session._node, None
        if node is not None and node is not self.primary:
            node.outstanding -= 1
        if session._fallback_slot and not keep_slot:
            session._fallback_slot = False
            self._fallback_in_use -= 1
            self._fallback_slots.release()

    def _replica_failed(self, node: DatabaseNode, error: BaseException) -> None:
        self.counters.replica_connect_failures += 1
        node.reachable = False
        node.error = type(error).__name__
        node.ban(f"request could not use it ({type(error).__name__})", self.settings.db_replica_ban_seconds)

    def can_fail_over(self, session: AsyncReadSession, error: BaseException) -> bool:
        if isinstance(session, AsyncWriteSession):
            return False
        on_replica = session._node is not None and session._node is not self.primary
        if is_connection_error(error):
            return True
        return on_replica and is_recovery_conflict(error)

    async def fail_over(self, session: AsyncReadSession, error: BaseException) -> None:
        """Move `session` off the node whose connection just failed, to run the statement again."""
        failed = session._node
        self.counters.failovers += 1
        if failed is not None and failed is not self.primary and is_connection_error(error):
            self._replica_failed(failed, error)
        logger.warning("read on %s failed (%s); retrying on another node", failed and failed.name, type(error).__name__)
        await self._unbind(session)
        exclude = (failed,) if failed is not None and failed is not self.primary else ()
        await self._place(session, exclude=exclude)

    # -- health -------------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        """Check every node now and report it (no passwords)."""
        await self.monitor.check()
        primary = self.primary.report()
        replicas = [node.report() for node in self.replicas]
        if primary["status"] != "healthy":
            status = "unhealthy"
        elif not replicas:
            status = "not_configured"
        elif all(replica["status"] == "healthy" for replica in replicas):
            status = "healthy"
        else:
            status = "degraded"
        s = self.settings
        return {
            "status": status,
            "primary": primary,
            "replicas": replicas,
            "routing": self.counters.as_dict(),
            "primary_fallback": self.primary_fallback_status(),
            "limits": {
                "max_lag_seconds": s.db_replica_max_lag_seconds,
                "max_lag_bytes": s.db_replica_max_lag_bytes,
                "ban_seconds": s.db_replica_ban_seconds,
                "check_interval_seconds": s.db_health_check_interval,
            },
        }

    def primary_fallback_status(self) -> dict[str, int]:
        """The primary's share of reads when no replica can take them: slots, in use, waiting."""
        return {
            "limit": self.settings.db_primary_fallback_max_reads,
            "in_use": self._fallback_in_use,
            "waiting": self._fallback_waiting,
        }

    def pool_status(self) -> dict[str, Any]:
        return {
            "primary": engine_pool_status(self.primary.engine),
            "primary_read_only": engine_pool_status(self.primary_read_engine),
            "replicas": {node.name: engine_pool_status(node.engine) for node in self.replicas},
        }

    def engines(self) -> list[AsyncEngine]:
        return [self.primary.engine, self.primary_read_engine, *(node.engine for node in self.replicas)]

    async def dispose_replicas(self) -> None:
        await asyncio.gather(*(node.engine.dispose() for node in self.replicas))

    async def dispose(self) -> None:
        await self.monitor.stop()
        await asyncio.gather(*(engine.dispose() for engine in self.engines()))

"""Read/write session routing: writes on the primary, reads on streaming replicas.

Routes declare what they need with the typed aliases:

    async def list_users(session: ReadSession): ...      # replica, never commits
    async def register(session: WriteSession): ...       # primary, commits on success

A write session may be passed where a read session is wanted (it is a subclass), never
the reverse. Read sessions are read-only on the server: on a replica by nature, and on the
primary fallback through `default_transaction_read_only`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from backend_app.core.config import Settings, get_settings, mask_url
from backend_app.core.database import create_engine

logger = logging.getLogger(__name__)

# Errors that mean "this database node cannot be reached right now", as opposed to a bad query.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionError,
    TimeoutError,  # also asyncio.TimeoutError
    socket.gaierror,
    PoolTimeoutError,
    OperationalError,
    InterfaceError,
)
# SQLSTATEs of a server that is gone or not taking connections: connection exceptions (08xxx),
# admin/crash shutdown and "cannot connect now" (57P0x), too many connections (53300).
_UNAVAILABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300")

# How long a replica that failed to connect stays out of rotation before it is tried again.
REPLICA_BAN_SECONDS = 5.0


class AsyncReadSession(AsyncSession):
    """A session for reads. It is never committed; writes through it fail on the server."""


class AsyncWriteSession(AsyncReadSession):
    """A session on the primary. Committed when the request succeeds, rolled back on error."""


def is_connection_error(error: BaseException) -> bool:
    if isinstance(error, CONNECTION_ERRORS):
        return True
    if isinstance(error, DBAPIError):
        sqlstate = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None) or ""
        return error.connection_invalidated or sqlstate.startswith(_UNAVAILABLE_SQLSTATES)
    # A refused or reset socket from the driver before SQLAlchemy could wrap it.
    return isinstance(error, OSError) and error.errno is not None


def parse_lsn(lsn: str | None) -> int | None:
    """PostgreSQL prints WAL positions as 'HI/LO' in hex; as one integer they subtract to bytes."""
    if not lsn:
        return None
    high, _, low = lsn.partition("/")
    return (int(high, 16) << 32) + int(low, 16)


def engine_pool_status(engine: AsyncEngine) -> dict[str, int]:
    pool: Any = engine.pool
    return {
        "size": pool.size(),
        "in_use": pool.checkedout(),
        "idle": pool.checkedin(),
        # SQLAlchemy counts overflow negatively while the pool is below its size.
        "overflow": max(pool.overflow(), 0),
    }


@dataclass
class DatabaseNode:
    name: str
    url: str
    engine: AsyncEngine
    banned_until: float = 0.0
    last_error: str | None = None

    @property
    def masked_url(self) -> str:
        return mask_url(self.url)

    def in_rotation(self, now: float) -> bool:
        return now >= self.banned_until

    def pool_status(self) -> dict[str, int]:
        return engine_pool_status(self.engine)


@dataclass
class RoutingCounters:
    replica: int = 0
    primary_no_replica: int = 0
    primary_because_down: int = 0
    replica_connect_failures: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class DatabaseRouter:
    """The engines for one process: the primary, a read-only view of it, and the replicas."""

    settings: Settings
    primary: DatabaseNode = field(init=False)
    primary_read_engine: AsyncEngine = field(init=False)
    replicas: list[DatabaseNode] = field(init=False)
    counters: RoutingCounters = field(default_factory=RoutingCounters)

    def __post_init__(self) -> None:
        s = self.settings
        self.primary = DatabaseNode(
            "primary",
            s.database_url,
            create_engine(s.database_url, pool_size=s.db_pool_size, max_overflow=s.db_max_overflow),
        )
        self.primary_read_engine = create_engine(
            s.database_url,
            pool_size=s.db_read_pool_size,
            max_overflow=s.db_read_max_overflow,
            pool_recycle=s.db_read_pool_recycle,
            connect_timeout=s.db_read_connect_timeout,
            read_only=True,
        )
        self.replicas = [
            DatabaseNode(
                f"replica-{index}",
                url,
                create_engine(
                    url,
                    pool_size=s.db_read_pool_size,
                    max_overflow=s.db_read_max_overflow,
                    pool_recycle=s.db_read_pool_recycle,
                    connect_timeout=s.db_read_connect_timeout,
                    read_only=True,
                ),
            )
            for index, url in enumerate(s.database_url_read, start=1)
        ]
        self._round_robin = itertools.count()
        self._write_sessions = async_sessionmaker(self.primary.engine, class_=AsyncWriteSession, expire_on_commit=False)

    def _read_sessionmaker(self, engine: AsyncEngine) -> async_sessionmaker[AsyncReadSession]:
        return async_sessionmaker(engine, class_=AsyncReadSession, expire_on_commit=False)

    def _replicas_in_turn(self) -> list[DatabaseNode]:
        now = time.monotonic()
        candidates = [node for node in self.replicas if node.in_rotation(now)]
        if not candidates:
            return []
        start = next(self._round_robin) % len(candidates)
        return candidates[start:] + candidates[:start]

    @asynccontextmanager
    async def write_session(self) -> AsyncIterator[AsyncWriteSession]:
        """A primary session that commits when the block succeeds and rolls back otherwise."""
        async with self._write_sessions() as session:
            try:
                yield session
            except BaseException:
                await session.rollback()
                raise
            await session.commit()

    @asynccontextmanager
    async def read_session(self) -> AsyncIterator[AsyncReadSession]:
        """A session on a reachable replica, or read-only on the primary when none is."""
        session = await self._open_read_session()
        async with session:
            yield session

    @asynccontextmanager
    async def primary_read_session(self) -> AsyncIterator[AsyncReadSession]:
        """A read-only session on the primary, for the rare read that must not be stale."""
        async with self._read_sessionmaker(self.primary_read_engine)() as session:
            yield session

    async def _open_read_session(self) -> AsyncReadSession:
        if not self.replicas:
            self.counters.primary_no_replica += 1
            return self._read_sessionmaker(self.primary_read_engine)()
        for node in self._replicas_in_turn():
            session = self._read_sessionmaker(node.engine)()
            try:
                # Check a connection out now so an unreachable replica is skipped before
                # the route runs, rather than failing its first query.
                await session.connection()
            except PoolTimeoutError:
                # Busy, not down: every pooled connection is in use. Try another node, no ban.
                await session.close()
                continue
            except Exception as error:
                await session.close()
                if not is_connection_error(error):
                    raise
                self._ban(node, error)
                continue
            self.counters.replica += 1
            return session
        self.counters.primary_because_down += 1
        return self._read_sessionmaker(self.primary_read_engine)()

    def _ban(self, node: DatabaseNode, error: BaseException) -> None:
        self.counters.replica_connect_failures += 1
        node.banned_until = time.monotonic() + REPLICA_BAN_SECONDS
        node.last_error = type(error).__name__
        logger.warning(
            "replica %s (%s) unreachable (%s); reading from other nodes for %.0fs",
            node.name,
            node.masked_url,
            node.last_error,
            REPLICA_BAN_SECONDS,
        )

    async def _probe(self, node: DatabaseNode, query: str) -> tuple[dict[str, Any], Any]:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.settings.db_read_connect_timeout):
                async with node.engine.connect() as connection:
                    row = (await connection.execute(text(query))).one()
        except Exception as error:
            # Any database error makes the node unhealthy in the report, never a 500.
            if not is_connection_error(error) and not isinstance(error, DBAPIError):
                raise
            return {"reachable": False, "error": type(error).__name__}, None
        return {"reachable": True, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}, row

    async def health(self) -> dict[str, Any]:
        primary_probe = self._probe(
            self.primary,
            "SELECT pg_is_in_recovery(), (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()"
            " ELSE pg_current_wal_lsn() END)::text",
        )
        replica_probes = [
            self._probe(
                node,
                "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text,"
                " EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())",
            )
            for node in self.replicas
        ]
        (primary_info, primary_row), *replica_results = await asyncio.gather(primary_probe, *replica_probes)
        primary_lsn = None
        if primary_row is not None:
            in_recovery, lsn = primary_row
            primary_lsn = parse_lsn(lsn)
            primary_info["role"] = "replica" if in_recovery else "primary"
        primary_info.update(name=self.primary.name, url=self.primary.masked_url, pool=self.primary.pool_status())
        primary_ok = primary_info["reachable"] and primary_info.get("role") == "primary"
        primary_info["status"] = "healthy" if primary_ok else "unhealthy"

        now = time.monotonic()
        replicas = []
        for node, (info, row) in zip(self.replicas, replica_results, strict=True):
            if row is not None:
                in_recovery, replay_lsn, seconds_since_replay = row
                info["role"] = "replica" if in_recovery else "primary"
                replayed = parse_lsn(replay_lsn)
                if primary_lsn is not None and replayed is not None:
                    info["lag_bytes"] = max(primary_lsn - replayed, 0)
                info["seconds_since_last_replay"] = (
                    None if seconds_since_replay is None else round(float(seconds_since_replay), 3)
                )
            healthy = info["reachable"] and info.get("role") == "replica"
            info.update(
                name=node.name,
                url=node.masked_url,
                status="healthy" if healthy else "unhealthy",
                in_rotation=node.in_rotation(now),
                pool=node.pool_status(),
            )
            replicas.append(info)

        if not primary_ok:
            status = "unhealthy"
        elif not replicas:
            status = "not_configured"
        elif all(replica["status"] == "healthy" for replica in replicas):
            status = "healthy"
        else:
            status = "degraded"
        return {
            "status": status,
            "primary": primary_info,
            "replicas": replicas,
            "routing": self.counters.as_dict(),
        }

    def pool_status(self) -> dict[str, Any]:
        return {
            "primary": self.primary.pool_status(),
            "primary_read_only": engine_pool_status(self.primary_read_engine),
            "replicas": {node.name: node.pool_status() for node in self.replicas},
        }

    async def dispose_replicas(self) -> None:
        await asyncio.gather(*(node.engine.dispose() for node in self.replicas))

    async def dispose(self) -> None:
        await asyncio.gather(self.primary.engine.dispose(), self.primary_read_engine.dispose(), self.dispose_replicas())


_router: DatabaseRouter | None = None


def init_database(settings: Settings | None = None) -> DatabaseRouter:
    """Create this process's engines. Called by the app lifespan and by worker start-up."""
    global _router
    if _router is None:
        _router = DatabaseRouter(settings or get_settings())
    return _router


def get_database_router() -> DatabaseRouter:
    if _router is None:
        raise RuntimeError("database not initialised: call init_database() at start-up")
    return _router


async def close_database() -> None:
    global _router
    if _router is not None:
        router, _router = _router, None
        await router.dispose()


async def close_read_replica() -> None:
    """Close the replica pools (they reopen on the next read)."""
    if _router is not None:
        await _router.dispose_replicas()


async def get_db_write() -> AsyncIterator[AsyncWriteSession]:
    async with get_database_router().write_session() as session:
        yield session


async def get_db_read() -> AsyncIterator[AsyncReadSession]:
    async with get_database_router().read_session() as session:
        yield session


get_db_replica = get_db_read

# scope="function" runs the commit before the response is sent, so a 2xx means committed.
WriteSession = Annotated[AsyncWriteSession, Depends(get_db_write, scope="function")]
ReadSession = Annotated[AsyncReadSession, Depends(get_db_read, scope="function")]


async def check_read_replica_health() -> dict[str, Any]:
    return await get_database_router().health()


def get_read_replica_pool_status() -> dict[str, Any]:
    return get_database_router().pool_status()

"""Read/write session routing: writes on the primary, reads on streaming replicas.

Routes declare what they need with the typed aliases:

    async def list_users(session: ReadSession): ...      # a replica, never commits
    async def register(session: WriteSession): ...       # the primary, commits on success

A write session may be passed where a read session is wanted (it is a subclass), never
the reverse. Read sessions are read-only on the server: on a replica by nature, and on the
primary through `default_transaction_read_only`.

How a read is placed (READ_REPLICA_SETUP.md has the operator's version):

1. Replicas in rotation (see `replica_health`), least busy first, ties taken in turn.
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
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, HTTPException, Request
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend_app.core.config import Settings, get_settings
from backend_app.core.database import create_engine
from backend_app.core.replica_health import (
    DatabaseNode,
    ReplicaMonitor,
    engine_pool_status,
    format_lsn,
    parse_lsn,
)

__all__ = ["format_lsn", "parse_lsn"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

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
# A replica cancelled the query to apply WAL ("conflict with recovery"): another node can run it.
_RECOVERY_CONFLICT_SQLSTATES = ("40001", "40P01")

# How many times one statement moves to another node before its error is returned.
MAX_FAILOVERS = 3

POSITION_HEADER = "X-DB-Position"
POSITION_COOKIE = "db_position"

# The WAL position a worker's reads must see: set around each task from its message.
_required_position: ContextVar[int | None] = ContextVar("required_db_position", default=None)


class PrimaryUnavailableError(ConnectionError):
    """The primary cannot take writes right now (down, unreachable, or read-only)."""


class ReadCapacityError(ConnectionError):
    """No replica can serve and the primary is already serving its share of fallback reads."""


def _sqlstate(error: BaseException) -> str:
    orig = getattr(error, "orig", None)
    return getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None) or ""


def is_connection_error(error: BaseException) -> bool:
    if isinstance(error, CONNECTION_ERRORS):
        return True
    if isinstance(error, DBAPIError):
        return error.connection_invalidated or _sqlstate(error).startswith(_UNAVAILABLE_SQLSTATES)
    # A refused or reset socket from the driver before SQLAlchemy could wrap it.
    return isinstance(error, OSError) and error.errno is not None


def _is_read_only_primary(error: BaseException) -> bool:
    """25006: the "primary" is in recovery (a failover put a replica at its address)."""
    return isinstance(error, DBAPIError) and _sqlstate(error) == "25006"


def position_from_text(value: str | None) -> int | None:
    """A WAL position as sent back by a client; ValueError when it is not one."""
    return parse_lsn(value) if value else None


@contextmanager
def reading_after(position: int | str | None) -> Iterator[None]:
    """Reads in this block (a worker's task) see at least WAL `position`."""
    if isinstance(position, str):
        try:
            position = position_from_text(position)
        except ValueError:
            logger.warning("ignoring malformed database position %r", position)
            position = None
    current = _required_position.get()
    if position is not None and current is not None:
        position = max(position, current)
    token = _required_position.set(position if position is not None else current)
    try:
        yield
    finally:
        _required_position.reset(token)


class AsyncReadSession(AsyncSession):
    """A session for reads. It is never committed; writes through it fail on the server.

    Placed by the router; a statement whose replica connection fails is re-run on another node.
    """

    _router: DatabaseRouter | None = None
    _node: DatabaseNode | None = None
    _position: int | None = None
    _fallback_slot = False

    @property
    def node_name(self) -> str | None:
        return self._node.name if self._node is not None else None

    async def _with_failover(self, call: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        for attempt in itertools.count():
            try:
                return await call(*args, **kwargs)
            except Exception as error:
                router = self._router
                if router is None or attempt >= MAX_FAILOVERS or not router.can_fail_over(self, error):
                    raise
                await router.fail_over(self, error)
        raise AssertionError("unreachable")

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        return await self._with_failover(super().execute, *args, **kwargs)

    async def scalar(self, *args: Any, **kwargs: Any) -> Any:
        return await self._with_failover(super().scalar, *args, **kwargs)

    async def get(self, *args: Any, **kwargs: Any) -> Any:
        return await self._with_failover(super().get, *args, **kwargs)

    async def get_one(self, *args: Any, **kwargs: Any) -> Any:
        return await self._with_failover(super().get_one, *args, **kwargs)


class AsyncWriteSession(AsyncReadSession):
    """A session on the primary. Committed when the request succeeds, rolled back on error.

    Never re-run elsewhere: a write that may have reached the primary is not repeated.
    """


@dataclass
class RoutingCounters:
    """Routing decisions since start; read by /health/database, ready for a metrics exporter."""

    replica: int = 0  # reads placed on a replica
    primary_because_lag: int = 0  # the client's last write had not reached a replica yet
    primary_because_down: int = 0  # no replica in rotation
    primary_no_replica: int = 0  # no replica configured
    failovers: int = 0  # a statement moved to another node after its connection failed
    replica_connect_failures: int = 0  # a request found a replica unreachable (it was banned)
    primary_reads_rejected: int = 0  # 503: replicas out and the primary at its fallback limit
    stale_because_primary_down: int = 0  # read-your-writes could not be kept: primary unreachable

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


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
        self.replicas = [
            DatabaseNode(f"replica-{index}", url, create_engine(url, **read_pool), expected_role="replica")
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
            if is_connection_error(error) or _is_read_only_primary(error):
                raise PrimaryUnavailableError(f"primary unavailable: {type(error).__name__}") from error
            raise

    @staticmethod
    async def _commit_position(connection: AsyncConnection) -> int | None:
        # After COMMIT, on the same connection and outside any transaction (one round trip):
        # the insert position is at or past the end of the commit record just written.
        try:
            raw = await connection.get_raw_connection()
            position = await raw.driver_connection.fetchval("SELECT pg_current_wal_insert_lsn()::text")  # type: ignore[union-attr]
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
        session._position = position if position is not None else _required_position.get()
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
            if await self._place_on_primary(session, limited=False):
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
        return on_replica and isinstance(error, DBAPIError) and _sqlstate(error) in _RECOVERY_CONFLICT_SQLSTATES

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
            "primary_fallback": {
                "limit": s.db_primary_fallback_max_reads,
                "in_use": self._fallback_in_use,
                "waiting": self._fallback_waiting,
            },
            "limits": {
                "max_lag_seconds": s.db_replica_max_lag_seconds,
                "max_lag_bytes": s.db_replica_max_lag_bytes,
                "ban_seconds": s.db_replica_ban_seconds,
                "check_interval_seconds": s.db_health_check_interval,
            },
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


# -- request plumbing -------------------------------------------------------------------------


def _remember_position(request: Request, position: int) -> None:
    # Never older than what the client sent: with two writes in flight, the response that
    # arrives last must not move the cookie back behind the other one.
    try:
        sent = request_position(request) or 0
    except HTTPException:
        sent = 0
    state = request.scope.setdefault("state", {})
    state["db_position"] = max(position, sent, state.get("db_position") or 0)


def request_position(request: Request) -> int | None:
    """The newest WAL position the client says it wrote (header or cookie)."""
    positions = []
    header = request.headers.get(POSITION_HEADER)
    if header:
        try:
            positions.append(position_from_text(header))
        except ValueError:
            raise HTTPException(
                status_code=400,
                detail=f"{POSITION_HEADER} must be a WAL position such as 0/16B3748, as sent by a previous response.",
            ) from None
    cookie = request.cookies.get(POSITION_COOKIE)
    if cookie:
        with contextlib.suppress(ValueError):  # a stale or mangled cookie must not break pages
            positions.append(position_from_text(cookie))
    known = [p for p in positions if p is not None]
    return max(known) if known else None


async def get_db_write(request: Request) -> AsyncIterator[AsyncWriteSession]:
    async with get_database_router().write_session(
        record_position=lambda position: _remember_position(request, position)
    ) as session:
        yield session


async def get_db_read(request: Request) -> AsyncIterator[AsyncReadSession]:
    async with get_database_router().read_session(position=request_position(request)) as session:
        yield session


get_db_replica = get_db_read

# scope="function" runs the commit before the response is sent, so a 2xx means committed.
WriteSession = Annotated[AsyncWriteSession, Depends(get_db_write, scope="function")]
ReadSession = Annotated[AsyncReadSession, Depends(get_db_read, scope="function")]


class DatabasePositionMiddleware:
    """Puts a committed write's WAL position on the response: header for API clients,
    cookie for browsers. Sent back, it lets the next read see the write."""

    def __init__(self, app: ASGIApp, *, cookie_max_age: int) -> None:
        self.app = app
        self.cookie_max_age = cookie_max_age

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_position(message: Message) -> None:
            if message["type"] == "http.response.start":
                position = scope.get("state", {}).get("db_position")
                if position:
                    value = format_lsn(position)
                    headers = MutableHeaders(scope=message)
                    headers.append(POSITION_HEADER, value)
                    headers.append(
                        "set-cookie",
                        f"{POSITION_COOKIE}={value}; Max-Age={self.cookie_max_age}; Path=/; HttpOnly; SameSite=Lax",
                    )
            await send(message)

        await self.app(scope, receive, send_with_position)


async def check_read_replica_health() -> dict[str, Any]:
    return await get_database_router().health()


def get_read_replica_pool_status() -> dict[str, Any]:
    return get_database_router().pool_status()

"""Database errors: the ones the router raises, and telling an unreachable node from a bad query."""

from __future__ import annotations

import socket

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

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


class PrimaryUnavailableError(ConnectionError):
    """The primary cannot take writes right now (down, unreachable, or read-only)."""


class ReadCapacityError(ConnectionError):
    """No replica can serve and the primary is already serving its share of fallback reads."""


def sqlstate(error: BaseException) -> str:
    """The SQLSTATE the server sent with `error`, or "" when there is none."""
    orig = getattr(error, "orig", None)
    return getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None) or ""


def is_connection_error(error: BaseException) -> bool:
    if isinstance(error, CONNECTION_ERRORS):
        return True
    if isinstance(error, DBAPIError):
        return error.connection_invalidated or sqlstate(error).startswith(_UNAVAILABLE_SQLSTATES)
    # A refused or reset socket from the driver before SQLAlchemy could wrap it.
    return isinstance(error, OSError) and error.errno is not None


def is_read_only_primary(error: BaseException) -> bool:
    """25006: the "primary" is in recovery (a failover put a replica at its address)."""
    return isinstance(error, DBAPIError) and sqlstate(error) == "25006"


def is_recovery_conflict(error: BaseException) -> bool:
    """A replica cancelled the statement to apply WAL: another node can run it."""
    return isinstance(error, DBAPIError) and sqlstate(error) in _RECOVERY_CONFLICT_SQLSTATES

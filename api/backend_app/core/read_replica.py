"""Kept for existing importers and the seed contract: the database layer is `backend_app.db`.

The seed contract names (`get_db_read`, `get_db_write`, `get_db_replica`,
`check_read_replica_health`, `get_read_replica_pool_status`, `close_read_replica`) and every
other name imported from here before the move stay importable; new code imports from
`backend_app.db.*`.
"""

from __future__ import annotations

from backend_app.db.base import create_engine
from backend_app.db.counters import RoutingCounters
from backend_app.db.dependencies import (
    ReadSession,
    WriteSession,
    get_db_read,
    get_db_replica,
    get_db_write,
    request_position,
)
from backend_app.db.errors import (
    CONNECTION_ERRORS,
    PrimaryUnavailableError,
    ReadCapacityError,
    is_connection_error,
)
from backend_app.db.lifecycle import (
    check_read_replica_health,
    close_database,
    close_read_replica,
    forget_inherited_router,
    get_database_router,
    get_read_replica_pool_status,
    init_database,
)
from backend_app.db.middleware import DatabasePositionMiddleware
from backend_app.db.monitor import DatabaseNode, ReplicaMonitor, engine_pool_status
from backend_app.db.position import (
    POSITION_COOKIE,
    POSITION_HEADER,
    format_lsn,
    parse_lsn,
    position_from_text,
    reading_after,
)
from backend_app.db.router import DatabaseRouter
from backend_app.db.sessions import MAX_FAILOVERS, AsyncReadSession, AsyncWriteSession

__all__ = [
    "CONNECTION_ERRORS",
    "MAX_FAILOVERS",
    "POSITION_COOKIE",
    "POSITION_HEADER",
    "AsyncReadSession",
    "AsyncWriteSession",
    "DatabaseNode",
    "DatabasePositionMiddleware",
    "DatabaseRouter",
    "PrimaryUnavailableError",
    "ReadCapacityError",
    "ReadSession",
    "ReplicaMonitor",
    "RoutingCounters",
    "WriteSession",
    "check_read_replica_health",
    "close_database",
    "close_read_replica",
    "create_engine",
    "engine_pool_status",
    "forget_inherited_router",
    "format_lsn",
    "get_database_router",
    "get_db_read",
    "get_db_replica",
    "get_db_write",
    "get_read_replica_pool_status",
    "init_database",
    "is_connection_error",
    "parse_lsn",
    "position_from_text",
    "reading_after",
    "request_position",
]

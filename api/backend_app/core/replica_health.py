"""Kept for existing importers: the replica monitor is `backend_app.db.monitor` (WAL position
parsing and printing is `backend_app.db.position`)."""

from __future__ import annotations

from backend_app.db.monitor import (
    FIRST_ROUND_SETTLE_SECONDS,
    FIRST_ROUND_SETTLE_STEP,
    PRIMARY_QUERY,
    REPLICA_QUERY,
    DatabaseNode,
    NodeProbe,
    ReplicaMonitor,
    engine_pool_status,
)
from backend_app.db.position import format_lsn, parse_lsn

__all__ = [
    "FIRST_ROUND_SETTLE_SECONDS",
    "FIRST_ROUND_SETTLE_STEP",
    "PRIMARY_QUERY",
    "REPLICA_QUERY",
    "DatabaseNode",
    "NodeProbe",
    "ReplicaMonitor",
    "engine_pool_status",
    "format_lsn",
    "parse_lsn",
]

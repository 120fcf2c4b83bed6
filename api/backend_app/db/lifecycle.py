"""This process's DatabaseRouter: made at start-up, closed at shutdown, dropped after a fork."""

from __future__ import annotations

from typing import Any

from backend_app.core.config import Settings, get_settings
from backend_app.db.router import DatabaseRouter

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


def forget_inherited_router() -> None:
    """In a forked child: drop the parent's router without touching its connections.

    The next init_database() then makes this process's own engines.
    """
    global _router
    router = _router
    if router is not None:
        # close=False: the connections belong to the parent process; do not close them.
        for engine in router.engines():
            engine.sync_engine.dispose(close=False)
        router.monitor.forget()
        _router = None


async def check_read_replica_health() -> dict[str, Any]:
    return await get_database_router().health()


def get_read_replica_pool_status() -> dict[str, Any]:
    return get_database_router().pool_status()

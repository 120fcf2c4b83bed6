"""Declarative Base with a stable constraint naming convention, its mixins, and the engine factory."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, MetaData, event, exc, func
from sqlalchemy.ext import asyncio as sqlalchemy_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Alembic autogenerate and hand-written migrations both rely on these names being stable.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class CreatedAtMixin:
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


def create_engine(
    url: str,
    *,
    pool_size: int,
    max_overflow: int,
    pool_recycle: int = -1,
    connect_timeout: float = 10,
    read_only: bool = False,
    application_name: str = "backend_app",
    pre_ping: bool = True,
    autocommit: bool = False,
) -> AsyncEngine:
    """An asyncpg engine. `read_only` makes every transaction on it read-only server-side.

    `pre_ping` checks each pooled connection on checkout, in one round trip (`ping_on_checkout`).
    Turn it off only where a statement that finds its connection dead is re-run elsewhere
    anyway (the replicas: AsyncReadSession's failover).

    `autocommit` sends no BEGIN/ROLLBACK around a session's statements (two round trips per
    session): for read-only engines only, where each statement's own snapshot is all that a
    READ COMMITTED transaction would give anyway."""
    options: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
    server_settings: dict[str, Any] = {"application_name": application_name}
    if read_only:
        server_settings["default_transaction_read_only"] = "on"
    # Looked up when called: with traces on, OpenTelemetry's instrumentor wraps it (core/tracing.py).
    engine = sqlalchemy_asyncio.create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_recycle=pool_recycle,
        pool_timeout=connect_timeout,
        connect_args={"timeout": connect_timeout, "server_settings": server_settings},
        **options,
    )
    if pre_ping:
        ping_on_checkout(engine, timeout=connect_timeout)
    return engine


# Set on a connection the pool has just opened: it needs no ping at its first checkout.
_FRESH = "jobplatform_fresh_connection"


def ping_on_checkout(engine: AsyncEngine, *, timeout: float) -> None:
    """Check each pooled connection when it is checked out, with one statement.

    SQLAlchemy's `pool_pre_ping` does the same in three round trips on asyncpg (BEGIN, the
    statement, ROLLBACK: a transaction so that PgBouncer's transaction mode keeps the
    connection, which this service does not sit behind), a third of a simple write's trips.
    This is SQLAlchemy's documented checkout-event recipe with its pre-ping's outcome: a
    connection that fails the ping invalidates the whole pool (the server restarted, so every
    older connection is dead too) and the checkout goes on with a new connection. A ping that
    hangs (a partitioned primary) fails after `timeout`.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def mark_fresh(dbapi_connection: Any, connection_record: Any) -> None:
        connection_record.info[_FRESH] = True

    @event.listens_for(engine.sync_engine, "checkout")
    def ping(dbapi_connection: Any, connection_record: Any, connection_proxy: Any) -> None:
        if connection_record.info.pop(_FRESH, False):
            return
        try:
            # The simple query protocol: one round trip, no prepared statement, no transaction
            # left open. (asyncpg cannot take an empty query's answer this way.)
            dbapi_connection.run_async(lambda driver: driver.execute("SELECT 1", timeout=timeout))
        except Exception as error:
            raise exc.InvalidatePoolError(f"a pooled connection failed its ping: {error!r}") from error

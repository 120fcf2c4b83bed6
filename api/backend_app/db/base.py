"""Declarative Base with a stable constraint naming convention, its mixins, and the engine factory."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, MetaData, func
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

    `pre_ping` checks each pooled connection on checkout (three round trips: BEGIN, a no-op
    statement, ROLLBACK). Turn it off only where a statement that finds its connection dead is
    re-run elsewhere anyway (the replicas: AsyncReadSession's failover).

    `autocommit` sends no BEGIN/ROLLBACK around a session's statements (two round trips per
    session): for read-only engines only, where each statement's own snapshot is all that a
    READ COMMITTED transaction would give anyway."""
    options: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
    server_settings: dict[str, Any] = {"application_name": application_name}
    if read_only:
        server_settings["default_transaction_read_only"] = "on"
    # Looked up when called: with traces on, OpenTelemetry's instrumentor wraps it (core/tracing.py).
    return sqlalchemy_asyncio.create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_recycle=pool_recycle,
        pool_pre_ping=pre_ping,
        pool_timeout=connect_timeout,
        connect_args={"timeout": connect_timeout, "server_settings": server_settings},
        **options,
    )

"""WAL positions: how they are read, printed and carried to the reads that must see them.

A write request's response carries its commit's position (`X-DB-Position` header and
`db_position` cookie); a worker's task carries the position of the write that queued it,
and `reading_after` makes every read session in the task see at least that far.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

logger = logging.getLogger(__name__)

POSITION_HEADER = "X-DB-Position"
POSITION_COOKIE = "db_position"

_CURRENT_WAL_INSERT_POSITION = "SELECT pg_current_wal_insert_lsn()::text"

# The WAL position a worker's reads must see: set around each task from its message.
_required_position: ContextVar[int | None] = ContextVar("required_db_position", default=None)


def parse_lsn(lsn: str | None) -> int | None:
    """PostgreSQL prints WAL positions as 'HI/LO' in hex; as one integer they subtract to bytes."""
    if not lsn:
        return None
    high, separator, low = lsn.strip().partition("/")
    if not separator or not high or not low or len(high) > 8 or len(low) > 8:
        raise ValueError(f"not a WAL position: {lsn!r}")
    return (int(high, 16) << 32) + int(low, 16)


def format_lsn(position: int) -> str:
    return f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"


def position_from_text(value: str | None) -> int | None:
    """A WAL position as sent back by a client; ValueError when it is not one."""
    return parse_lsn(value) if value else None


async def current_wal_insert_position(db: AsyncSession | AsyncConnection) -> str | None:
    """The primary's WAL insert position as PostgreSQL prints it: every transaction already
    committed ends before it.

    A session runs the query in its transaction like any other statement. A connection runs
    it straight on the driver, outside any transaction: one round trip right after a COMMIT.
    """
    if isinstance(db, AsyncSession):
        return await db.scalar(text(_CURRENT_WAL_INSERT_POSITION))
    raw = await db.get_raw_connection()
    return await raw.driver_connection.fetchval(_CURRENT_WAL_INSERT_POSITION)  # type: ignore[union-attr]


def required_position() -> int | None:
    """The WAL position this block's reads must see (set by `reading_after`), if any."""
    return _required_position.get()


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


# Further than this past the primary's last sampled WAL position (sampled every
# DB_HEALTH_CHECK_INTERVAL), a client's read position cannot be real: 1 GiB of WAL between two
# samples is far beyond what this service writes.
MAX_POSITION_AHEAD_BYTES = 1 << 30


def plausible(position: int | None, primary_position: int | None) -> bool:
    """Whether a client's read position could have been handed out by this service: not
    further past the primary's last sampled position than the primary can write between two
    samples. `FFFFFFFF/FFFFFFFF` is not, and honouring it would send every read of that
    client to the primary."""
    return position is None or primary_position is None or position - primary_position <= MAX_POSITION_AHEAD_BYTES

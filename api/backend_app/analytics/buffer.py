"""The job-view buffer: a Redis list the API appends to and the analytics worker drains.

Only server-side events recorded on read requests (job views) come through here, because a
read must not write to the primary; events clients send are stored by their request.

One event per RQ job is the wrong shape for page views (a stock RQ worker runs about ten
jobs a second here). The API appends events to `analytics:events` (one RPUSH per request)
and makes sure a flush job is queued at most every FLUSH_EVERY_SECONDS; the flush job
atomically renames the list to a private key, writes the whole batch to PostgreSQL in one
statement, and deletes the key. A flush that dies leaves its key behind; the next flush
writes it (event ids make the second write harmless).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from redis import Redis
from redis.exceptions import ResponseError

from backend_app.db.errors import is_connection_error

logger = logging.getLogger(__name__)

EVENTS_KEY = "analytics:events"
PROCESSING_PREFIX = "analytics:events:processing:"
# Events PostgreSQL refused, kept for inspection instead of blocking every later flush.
DEAD_LETTER_KEY = "analytics:events:refused"
FLUSH_FLAG_KEY = "analytics:flush-queued"
FLUSH_EVERY_SECONDS = 1


def new_event(
    event_type: str,
    *,
    user_id: int | None,
    data: dict[str, Any] | None = None,
    subject_id: int | None = None,
    occurred_at: datetime | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    return {
        "event_id": event_id or str(uuid.uuid4()),
        "event_type": event_type,
        "user_id": user_id,
        "subject_id": subject_id,
        "data": data or {},
        "occurred_at": (occurred_at or datetime.now(UTC)).isoformat(),
    }


def append(redis: Redis, events: list[dict[str, Any]], queue_flush: Callable[[], None]) -> None:
    """Buffer events (raises RedisError when Redis is down) and queue a flush when due."""
    with redis.pipeline(transaction=False) as pipeline:
        pipeline.rpush(EVENTS_KEY, *(json.dumps(event) for event in events))
        pipeline.set(FLUSH_FLAG_KEY, "1", nx=True, ex=FLUSH_EVERY_SECONDS)
        _, flush_due = pipeline.execute()
    if flush_due:
        queue_flush()


async def drain(
    redis: Redis, store: Callable[[list[dict[str, Any]]], Awaitable[int]], *, max_seconds: float = 5.0
) -> int:
    """Move buffered events to PostgreSQL through `store`; returns how many were stored.

    A coroutine for the worker's loop: Redis (a blocking client) is called from a thread.
    """
    stored = 0
    leftovers = await asyncio.to_thread(lambda: list(redis.scan_iter(match=f"{PROCESSING_PREFIX}*")))
    for leftover in leftovers:
        stored += await _store_key(redis, leftover, store)
    deadline = time.monotonic() + max_seconds
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        key = f"{PROCESSING_PREFIX}{uuid.uuid4().hex}"
        try:
            await asyncio.to_thread(redis.rename, EVENTS_KEY, key)
        except ResponseError:
            # Nothing buffered. Wait out one flush period: an event appended while this
            # job ran found the "flush queued" flag set and queued no flush of its own.
            if time.monotonic() - quiet_since > FLUSH_EVERY_SECONDS + 0.5:
                break
            await asyncio.sleep(0.1)
            continue
        stored += await _store_key(redis, key, store)
        quiet_since = time.monotonic()
    return stored


async def _store_key(redis: Redis, key: bytes | str, store: Callable[[list[dict[str, Any]]], Awaitable[int]]) -> int:
    raw_events = await asyncio.to_thread(redis.lrange, key, 0, -1)
    events = [_decode(raw) for raw in raw_events]
    try:
        stored = await store(events)
    except Exception as error:
        if is_connection_error(error):
            raise  # the database is down: keep the key, the next flush retries it
        stored = await _store_one_by_one(redis, raw_events, store)
    await asyncio.to_thread(redis.delete, key)
    return stored


def _decode(raw: bytes) -> dict[str, Any]:
    event = json.loads(raw)
    event["occurred_at"] = datetime.fromisoformat(event["occurred_at"])
    return event


async def _store_one_by_one(
    redis: Redis, raw_events: list[bytes], store: Callable[[list[dict[str, Any]]], Awaitable[int]]
) -> int:
    """A batch PostgreSQL refused: store what it takes, set the rest aside."""
    stored = 0
    for raw in raw_events:
        try:
            stored += await store([_decode(raw)])
        except Exception as error:
            if is_connection_error(error):
                raise
            await asyncio.to_thread(redis.rpush, DEAD_LETTER_KEY, raw)
            logger.error(
                "analytics event refused by PostgreSQL (%s); kept in %s", type(error).__name__, DEAD_LETTER_KEY
            )
    return stored

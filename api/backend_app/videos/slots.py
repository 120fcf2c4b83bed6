"""Upload slots: at most a few uploads in flight per user, counted in Redis so every API
process shares the count.

A slot is a member of the user's sorted set, scored by when it expires. The upload holding
it pushes that moment forward while it runs, so a process that dies mid-upload leaks its
slots for SLOT_TTL_SECONDS at most. With Redis unreachable, uploads are not limited (fail
open, one warning a minute): an outage of a limiter must not become an outage of uploads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator

from redis.commands.core import Script
from redis.exceptions import RedisError

from backend_app.core.redis import RedisOutage, get_redis

logger = logging.getLogger(__name__)

# Uploads one user may have in flight at once (a setting once config.py has it).
UPLOADS_PER_USER = 2
# How long a slot outlives its last sign of life; refreshed every third of it.
SLOT_TTL_SECONDS = 60.0
# What a refused upload is told to wait: slots free as uploads finish or stall out.
RETRY_AFTER_SECONDS = 10
KEY_PREFIX = "video-uploads"

# KEYS[1]: the user's slots; ARGV: limit, ttl in ms, slot id. Redis's clock, so API hosts
# whose clocks disagree still agree on what expired.
_TAKE = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

_REFRESH = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
if redis.call('ZADD', KEYS[1], 'XX', 'CH', now_ms + tonumber(ARGV[1]), ARGV[2]) == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return 1
"""


class UploadsBusy(Exception):
    """The user already has UPLOADS_PER_USER uploads in flight."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"{limit} uploads in flight")
        self.limit = limit
        self.retry_after = RETRY_AFTER_SECONDS


outage = RedisOutage("upload slots")


def _scripts() -> tuple[Script, Script]:
    redis = get_redis()
    return redis.register_script(_TAKE), redis.register_script(_REFRESH)


def _key(user_id: int) -> str:
    return f"{KEY_PREFIX}:{user_id}"


def _ttl_ms() -> int:
    return int(SLOT_TTL_SECONDS * 1000)


async def _take(user_id: int, slot: str, limit: int) -> bool | None:
    """True: taken; False: all in use; None: Redis did not answer (not limited)."""
    if outage.ongoing:
        return None
    take, _ = _scripts()
    try:
        return bool(await asyncio.to_thread(take, keys=[_key(user_id)], args=[limit, _ttl_ms(), slot]))
    except RedisError as error:
        outage.failed(error)
        return None


async def _keep_alive(user_id: int, slot: str) -> None:
    _, refresh = _scripts()
    while True:
        await asyncio.sleep(SLOT_TTL_SECONDS / 3)
        try:
            await asyncio.to_thread(refresh, keys=[_key(user_id)], args=[_ttl_ms(), slot])
        except RedisError as error:
            outage.failed(error)


async def _give_back(user_id: int, slot: str) -> None:
    try:
        await asyncio.to_thread(get_redis().zrem, _key(user_id), slot)
    except RedisError as error:  # it expires on its own
        outage.failed(error)


@contextlib.asynccontextmanager
async def upload_slot(user_id: int, *, limit: int = UPLOADS_PER_USER) -> AsyncIterator[None]:
    """Hold one of the user's upload slots for the block, or raise `UploadsBusy`."""
    slot = uuid.uuid4().hex
    taken = await _take(user_id, slot, limit)
    if taken is False:
        raise UploadsBusy(limit)
    if taken is None:
        yield
        return
    keeper = asyncio.create_task(_keep_alive(user_id, slot))
    try:
        yield
    finally:
        keeper.cancel()  # a refresh still under way cannot bring the slot back (ZADD XX)
        await _give_back(user_id, slot)

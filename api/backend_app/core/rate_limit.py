"""Rate limits on the Redis the service already runs, with the `limits` library.

    await rate_limit.hit(settings.rate_limit_register_per_address, "register", client_address)

A limit is a setting in the library's notation ("20/hour"); the identifiers name what is
counted (a route and an address, a user id, an email). Past the limit, `RateLimited`
becomes a 429 with `Retry-After` (core/errors.py). The counters live in Redis, so every API
process shares them. With Redis down, limits are not enforced (fail open) and a warning is
logged at most once a minute: a throttle must not turn a Redis outage into an outage of
login or registration.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import weakref
from functools import lru_cache

from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from starlette.requests import Request

from backend_app.core.config import get_settings
from backend_app.core.redis import RedisOutage

logger = logging.getLogger(__name__)

KEY_PREFIX = "rate-limit"


def client_address(request: Request) -> str:
    """The caller's address, the key of per-address limits: the connection's peer, or, behind
    a proxy listed in FORWARDED_ALLOW_IPS, the address it reports (uvicorn rewrites the peer
    for those proxies only)."""
    return request.client.host if request.client else "unknown"


class RateLimited(Exception):
    def __init__(self, retry_after: int, detail: str) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
        self.detail = detail


# One limiter per event loop: an asyncio Redis client belongs to the loop that made it.
_limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SlidingWindowCounterRateLimiter] = (
    weakref.WeakKeyDictionary()
)
outage = RedisOutage("rate limits")


@lru_cache(maxsize=64)
def _item(limit: str) -> RateLimitItem:
    return parse(limit)


def _limiter() -> SlidingWindowCounterRateLimiter:
    loop = asyncio.get_running_loop()
    limiter = _limiters.get(loop)
    if limiter is None:
        storage = RedisStorage(
            f"async+{get_settings().redis_url}",
            implementation="redispy",
            key_prefix=KEY_PREFIX,
            wrap_exceptions=True,
            socket_connect_timeout=1,
            socket_timeout=1,
        )
        limiter = _limiters[loop] = SlidingWindowCounterRateLimiter(storage)
    return limiter


def _active() -> bool:
    return get_settings().rate_limits_enabled and not outage.ongoing


async def _retry_after(
    limiter: SlidingWindowCounterRateLimiter, item: RateLimitItem, identifiers: tuple[str, ...]
) -> int:
    stats = await limiter.get_window_stats(item, *identifiers)
    return max(1, math.ceil(stats.reset_time - time.time()))


async def hit(limit: str, *identifiers: str, detail: str = "Too many requests; retry later.") -> None:
    """Count one request; raise `RateLimited` if it is over `limit`."""
    if not _active():
        return
    item = _item(limit)
    limiter = _limiter()
    try:
        if await limiter.hit(item, *identifiers):
            return
        retry_after = await _retry_after(limiter, item, identifiers)
    except Exception as error:
        outage.failed(error)
        return
    raise RateLimited(retry_after, detail)


async def allows(limit: str, *identifiers: str) -> bool:
    """Whether one more would be within `limit`, without counting it (True with Redis down)."""
    if not _active():
        return True
    limiter = _limiter()
    try:
        return await limiter.test(_item(limit), *identifiers)
    except Exception as error:
        outage.failed(error)
        return True


async def check(limit: str, *identifiers: str, detail: str = "Too many requests; retry later.") -> None:
    """Raise `RateLimited` if `limit` is used up, without counting this request (for limits
    on failures, which are counted with `hit` once the failure happened)."""
    if await allows(limit, *identifiers):
        return
    try:
        retry_after = await _retry_after(_limiter(), _item(limit), identifiers)
    except Exception as error:
        outage.failed(error)
        return
    raise RateLimited(retry_after, detail)

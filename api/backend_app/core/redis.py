"""The process's one Redis client (queues, throttles, buffers, canaries)."""

from __future__ import annotations

import logging
import time
from functools import lru_cache

from redis import Redis

from backend_app.core.config import get_settings

logger = logging.getLogger(__name__)


@lru_cache
def get_redis() -> Redis:
    """The process's Redis client. Creating it does not connect, so importing and starting
    work while Redis is down."""
    return Redis.from_url(
        get_settings().redis_url,
        socket_connect_timeout=2,
        socket_timeout=5,
        health_check_interval=30,
        retry_on_timeout=False,
    )


class RedisOutage:
    """Remembers that Redis just failed, for features that fail open without it (rate limits,
    upload slots): for a few seconds they skip Redis instead of waiting for a timeout on
    every request, and the outage is logged at most once a minute."""

    def __init__(self, feature: str, *, skip_seconds: float = 5.0) -> None:
        self.feature = feature
        self.skip_seconds = skip_seconds
        self.skip_until = 0.0
        self._last_warning = 0.0

    @property
    def ongoing(self) -> bool:
        return time.monotonic() < self.skip_until

    def failed(self, error: Exception) -> None:
        now = time.monotonic()
        self.skip_until = now + self.skip_seconds
        if now - self._last_warning > 60:
            self._last_warning = now
            logger.warning("%s not enforced: Redis unavailable (%s)", self.feature, type(error).__name__)

    def forget(self) -> None:
        """Ask Redis again on the next use (tests, after a restart they caused)."""
        self.skip_until = 0.0

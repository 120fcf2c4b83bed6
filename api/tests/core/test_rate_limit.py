"""Rate limits counted in the test stack's Redis; open, not closed, while Redis is down."""

from __future__ import annotations

import time

import pytest

from backend_app.core import rate_limit
from devtools.devstack import LocalStack


async def test_the_request_past_the_limit_is_refused_with_a_retry_after(stack: LocalStack) -> None:
    await rate_limit.hit("2/minute", "test", "203.0.113.7")
    await rate_limit.hit("2/minute", "test", "203.0.113.7")
    with pytest.raises(rate_limit.RateLimited) as refused:
        await rate_limit.hit("2/minute", "test", "203.0.113.7", detail="Slow down.")
    assert 1 <= refused.value.retry_after <= 60
    assert refused.value.detail == "Slow down."
    # Counted per identifier: another address is not affected.
    await rate_limit.hit("2/minute", "test", "203.0.113.8")


async def test_check_does_not_count(stack: LocalStack) -> None:
    for _ in range(5):
        await rate_limit.check("1/minute", "failures", "ada@example.com")
    await rate_limit.hit("1/minute", "failures", "ada@example.com")
    with pytest.raises(rate_limit.RateLimited):
        await rate_limit.check("1/minute", "failures", "ada@example.com")


async def test_limits_are_not_enforced_while_redis_is_down(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    # The outage memory is put back after the test, so the next one checks Redis again.
    monkeypatch.setattr(rate_limit.outage, "skip_until", 0.0)
    assert stack.redis is not None
    stack.redis.stop()
    started = time.monotonic()
    for _ in range(5):
        await rate_limit.hit("1/minute", "test", "198.51.100.1")
    # One timeout at most, then the limits are skipped for a while instead of waited for.
    assert time.monotonic() - started < 3

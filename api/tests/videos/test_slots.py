"""Upload slots in Redis: the per-user limit, its release, and its expiry after a crash."""

from __future__ import annotations

import asyncio

import pytest

from backend_app.core.redis import get_redis
from backend_app.videos import slots
from devtools.devstack import LocalStack


@pytest.fixture(autouse=True)
def fresh_limiter(monkeypatch: pytest.MonkeyPatch) -> None:
    # A Redis outage in an earlier test must not leave the limit skipped.
    monkeypatch.setattr(slots.outage, "skip_until", 0.0)


async def test_a_user_gets_two_slots_and_others_are_not_counted_against_them() -> None:
    async with slots.upload_slot(1), slots.upload_slot(1):
        with pytest.raises(slots.UploadsBusy) as busy:
            async with slots.upload_slot(1):
                pass
        async with slots.upload_slot(2):
            pass
    assert busy.value.retry_after == slots.RETRY_AFTER_SECONDS
    async with slots.upload_slot(1), slots.upload_slot(1):
        pass  # both given back on the way out
    assert get_redis().zcard("video-uploads:1") == 0


async def test_an_upload_that_fails_gives_its_slot_back() -> None:
    with pytest.raises(RuntimeError):
        async with slots.upload_slot(1):
            raise RuntimeError("the upload failed")
    async with slots.upload_slot(1), slots.upload_slot(1):
        pass


async def test_slots_of_a_process_that_died_expire(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(slots, "SLOT_TTL_SECONDS", 0.5)
    # Taken and never given back, as by an API process killed mid-upload.
    assert await slots._take(1, "dead-1", 2) is True
    assert await slots._take(1, "dead-2", 2) is True
    assert await slots._take(1, "new", 2) is False

    await asyncio.sleep(0.7)

    async with slots.upload_slot(1), slots.upload_slot(1):
        pass


async def test_a_long_upload_keeps_its_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(slots, "SLOT_TTL_SECONDS", 0.6)
    async with slots.upload_slot(1), slots.upload_slot(1):
        await asyncio.sleep(1.5)  # over twice the TTL: alive only through the refreshes
        assert await slots._take(1, "third", 2) is False


async def test_without_redis_uploads_are_not_limited(stack: LocalStack) -> None:
    assert stack.redis is not None
    stack.redis.stop()

    async with slots.upload_slot(1), slots.upload_slot(1), slots.upload_slot(1):
        pass

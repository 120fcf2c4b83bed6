"""Issue 13's stalled-upload attack against the API as deployed: the Procfile's `web` line (a
real uvicorn) and raw sockets that send an upload's headers and 100 bytes, then nothing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import httpx
import pytest

from devtools.devstack import LocalStack
from tests.accounts import PASSWORD, sign_up
from tests.processes import Worker, web_server
from tests.videos.clips import make_clip
from tests.videos.stalled import close_all, open_stalled_uploads, primary_in_use, seed_accounts, statuses

POOL_SIZE = 20  # DB_POOL_SIZE + DB_MAX_OVERFLOW, the defaults
# Before the fix, other users' writes waited 10 s for a connection, then answered 503. Now
# each answers within this, or within 3x its time before the attack on a slow machine.
NORMAL_SECONDS = 3.0


@pytest.fixture
async def web(tmp_path: Path) -> AsyncIterator[tuple[Worker, httpx.AsyncClient]]:
    server, base_url = web_server(tmp_path)
    server.start()
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            yield server, client
    finally:
        server.stop()


async def timed(request: Awaitable[httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    response = await request
    return response, time.perf_counter() - started


async def test_stalled_uploads_hold_no_database_connection_and_others_write_normally(
    web: tuple[Worker, httpx.AsyncClient], stack: LocalStack, tmp_path: Path
) -> None:
    server, client = web
    _, bob = await sign_up(client, "bob")
    admin = seed_accounts(stack, "ops", 1, is_admin=True)[0]
    several = seed_accounts(stack, "attacker", 10)
    alone = seed_accounts(stack, "loner", 1)[0]

    async def others_write_normally() -> float:
        """Bob signs in and posts, a newcomer signs up; the slowest of the three, in seconds."""
        login, login_seconds = await timed(
            client.post("/api/auth/login", json={"email": "bob@example.com", "password": PASSWORD})
        )
        post, post_seconds = await timed(client.post("/api/posts", json={"body": "still here"}, headers=bob))
        newcomer = f"carol{time.monotonic_ns()}"
        register, register_seconds = await timed(
            client.post(
                "/api/auth/register",
                json={
                    "email": f"{newcomer}@example.com",
                    "username": newcomer,
                    "password": PASSWORD,
                    "first_name": "Carol",
                    "last_name": "Tester",
                    "role": "job_seeker",
                },
            )
        )
        assert (login.status_code, post.status_code, register.status_code) == (200, 201, 201)
        assert await primary_in_use(client, admin) <= 2, f"of {POOL_SIZE}: the stalled uploads hold none"
        return max(login_seconds, post_seconds, register_seconds)

    normal = max(NORMAL_SECONDS, 3 * await others_write_normally())

    # 20 stalled uploads from 10 accounts: two each, all within the per-user limit.
    spread = await open_stalled_uploads(str(client.base_url), [several[i // 2] for i in range(20)])
    single = []
    try:
        await asyncio.sleep(1)  # they have all reached the route
        assert await others_write_normally() < normal

        # 20 more from one account: the limit lets two in and refuses the rest at once
        # (within 3 s), without waiting for their bodies.
        single = await open_stalled_uploads(str(client.base_url), [alone] * 20)
        single_answers = await statuses(single, wait=3)
        assert single_answers.count(429) == 18, single_answers
        assert single_answers.count(None) == 2, "two of one user's uploads go on"
        assert await others_write_normally() < normal
        assert await statuses(spread) == [None] * 20, "the stalled uploads are still waiting (no early cut-off)"
    finally:
        await close_all(spread + single)

    # A client that goes away mid-upload is one log line, and its slot is free again.
    await asyncio.sleep(1)
    log = server.output()
    assert "upload abandoned: the client disconnected" in log
    assert "Traceback" not in log
    assert "ClientDisconnect" not in log
    clip = make_clip(tmp_path / "after.mp4", seconds=1)
    with clip.open("rb") as file:
        response = await client.post(
            "/api/videos/upload",
            files={"file": ("after.mp4", file)},
            headers={"Authorization": f"Bearer {alone}"},
        )
    assert response.status_code == 202, response.text
    assert response.headers["X-DB-Position"], "read-your-writes as for every write"
    assert response.cookies.get("db_position") == response.headers["X-DB-Position"]

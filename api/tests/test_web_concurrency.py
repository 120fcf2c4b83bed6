"""The production server command: the Procfile's `web` line with WEB_CONCURRENCY processes.
Everything per process (pools, the replica monitor, the Redis client) is made in each
worker's own lifespan, so read-your-writes holds whichever process answers, and a worker
that dies is replaced while the other serves."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx

from devtools.devstack import LocalStack
from tests.accounts import PASSWORD, verify_directly
from tests.processes import wait_until, web_server

REQUESTS = 40


async def test_two_api_processes_keep_read_your_writes_and_replace_a_dead_one(
    stack: LocalStack, tmp_path: Path
) -> None:
    server, base_url = web_server(tmp_path, env={"WEB_CONCURRENCY": "2"})
    server.start()
    try:
        await wait_until(
            lambda: server.output().count("Application startup complete") >= 2, what="both workers started"
        )
        workers = server.children()
        assert len(workers) >= 2, server.output()

        async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
            registered = await client.post(
                "/api/auth/register",
                json={
                    "email": "multi@example.com",
                    "username": "multi",
                    "password": PASSWORD,
                    "first_name": "Multi",
                    "last_name": "Process",
                    "role": "employer",
                },
            )
            assert registered.status_code == 201, f"{registered.text}\n{server.output()}"
            verify_directly(registered.json()["id"])
            login = await client.post("/api/auth/login", json={"email": "multi@example.com", "password": PASSWORD})
            headers = {"Authorization": f"Bearer {login.json()['access_token']}"}

        for replica in stack.replicas:
            replica.psql("SELECT pg_wal_replay_pause()")
        try:
            async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
                posted = await client.post(
                    "/api/jobs",
                    json={"title": "Night shift", "description": "Two processes, one truth", "location": "Oslo"},
                    headers=headers,
                )
            assert posted.status_code == 201, f"{posted.text}\n{server.output()}"
            position = {"X-DB-Position": posted.headers["x-db-position"]}
            async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
                unaware = await client.get(f"/api/jobs/{posted.json()['id']}")
            assert unaware.status_code == 404  # the replicas really are behind
            # A new connection each time, so the kernel hands them to either process.
            statuses = []
            for _ in range(REQUESTS):
                async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
                    statuses.append(
                        (await client.get(f"/api/jobs/{posted.json()['id']}", headers=position)).status_code
                    )
            assert statuses == [200] * REQUESTS
        finally:
            for replica in stack.replicas:
                replica.psql("SELECT pg_wal_replay_resume()")

        os.kill(workers[0], signal.SIGKILL)
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
            answered = [(await client.get("/health")).status_code for _ in range(REQUESTS)]
        assert answered == [200] * REQUESTS
        await wait_until(
            lambda: len(set(server.children()) - {workers[0]}) >= 2, seconds=30, what="the dead worker replaced"
        )
    finally:
        server.stop()

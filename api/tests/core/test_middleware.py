"""Body limits and security headers, over real HTTP where a client's own behaviour matters."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from backend_app.core.config import Settings, get_settings
from devtools.devstack import LocalStack
from tests.processes import web_server

MIB = 1024 * 1024


async def test_a_declared_body_over_the_limit_is_refused_before_it_is_read(client: httpx.AsyncClient) -> None:
    body = b'{"events": [' + b" " * (19 * MIB) + b"]}"
    started = time.monotonic()
    response = await client.post("/api/analytics/events", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413
    limit = get_settings().max_json_body_bytes
    assert response.json() == {
        "detail": f"The request body is larger than this endpoint accepts ({limit} bytes).",
        "code": "body_too_large",
    }
    assert time.monotonic() - started < 2


async def test_a_chunked_body_is_cut_off_at_the_limit(client: httpx.AsyncClient) -> None:
    received = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal received
        yield b'{"events": ['
        for _ in range(40):  # 20 MiB if it were all read
            received += 1
            yield b" " * (MIB // 2)
        yield b"]}"

    response = await client.post(
        "/api/analytics/events", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert "larger than this endpoint accepts" in response.json()["detail"]
    assert received <= 4  # stopped reading at 1 MiB, not after 20


async def test_a_body_within_the_limit_is_handled_as_usual(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/auth/login", json={"email": "nobody@example.com", "password": "x" * 10})
    assert response.status_code == 401


async def test_every_response_carries_the_security_headers(client: httpx.AsyncClient) -> None:
    for response in (
        await client.get("/health"),
        await client.get("/api/jobs/999999"),
        await client.post("/api/auth/login", json={}),
        await client.get("/no/such/route"),
    ):
        assert response.headers["x-content-type-options"] == "nosniff", response.url
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
        assert "max-age=31536000" in response.headers["strict-transport-security"]
    docs = await client.get("/docs")
    assert docs.status_code == 200
    # Swagger UI runs this origin's scripts and its own inline one (by hash), nothing else.
    policy = docs.headers["content-security-policy"]
    assert "script-src 'self' 'sha256-" in policy
    assert "http" not in policy
    assert "unsafe-eval" not in policy
    assert docs.headers["x-frame-options"] == "DENY"


def test_a_huge_json_body_does_not_stall_other_requests(stack: LocalStack, tmp_path: Path) -> None:
    """The 19 MB attack of issue 13, against the API as deployed: refused at once, and
    /health answers meanwhile."""
    server, base_url = web_server(tmp_path)
    server.start()
    host, port = base_url.removeprefix("http://").split(":")
    attacker = socket.create_connection((host, int(port)))
    try:
        attacker.sendall(
            b"POST /api/analytics/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 19922944\r\n\r\n" + b"[" * 1000
        )
        reply = attacker.recv(4096)
        assert reply.startswith(b"HTTP/1.1 413"), reply[:100]
        started = time.monotonic()
        assert httpx.get(f"{base_url}/health", timeout=5).status_code == 200
        assert time.monotonic() - started < 1
    finally:
        attacker.close()
        server.stop()


PAGE_ORIGIN = "http://localhost:5173"
PREFLIGHT = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization, x-db-position"}


@pytest.fixture
async def cors_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    from backend_app.main import create_app

    application: FastAPI = create_app(settings.model_copy(update={"cors_origins": [PAGE_ORIGIN]}))
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


async def test_a_preflight_from_an_allowed_origin_is_answered_before_any_other_work(
    cors_client: httpx.AsyncClient,
) -> None:
    # A preflight carries no body and no credentials; a huge declared length must not matter.
    response = await cors_client.options(
        "/api/jobs", headers={"Origin": PAGE_ORIGIN, "Content-Length": str(100 * MIB), **PREFLIGHT}
    )

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == PAGE_ORIGIN
    assert response.headers["access-control-allow-credentials"] == "true"
    assert {"authorization", "x-db-position"} <= set(
        response.headers["access-control-allow-headers"].lower().split(", ")
    )
    assert int(response.headers["access-control-max-age"]) > 0
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_errors_are_readable_by_an_allowed_origin(cors_client: httpx.AsyncClient) -> None:
    origin = {"Origin": PAGE_ORIGIN}
    too_large = await cors_client.post(
        "/api/analytics/events",
        content=b" " * (get_settings().max_json_body_bytes + 1),
        headers={**origin, "content-type": "application/json"},
    )
    missing = await cors_client.get("/api/jobs/999999", headers=origin)
    bad_position = await cors_client.get("/api/jobs", headers={**origin, "X-DB-Position": "nonsense"})

    for response, status in ((too_large, 413), (missing, 404), (bad_position, 400)):
        assert response.status_code == status
        assert response.headers["access-control-allow-origin"] == PAGE_ORIGIN, status
        exposed = response.headers["access-control-expose-headers"].lower()
        assert {"x-db-position", "retry-after", "x-request-id"} <= set(exposed.split(", ")), status


async def test_a_disallowed_origin_gets_no_cors_headers(cors_client: httpx.AsyncClient) -> None:
    stranger = {"Origin": "https://evil.example"}
    preflight = await cors_client.options("/api/jobs", headers={**stranger, **PREFLIGHT})
    read = await cors_client.get("/api/jobs/999999", headers=stranger)

    assert preflight.status_code == 400
    assert "access-control-allow-origin" not in preflight.headers
    assert "access-control-allow-origin" not in read.headers
    assert read.status_code == 404  # CORS is the browser's rule: the answer itself is the same


async def test_without_cors_origins_there_is_no_cors_at_all(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/jobs/999999", headers={"Origin": PAGE_ORIGIN})

    assert "access-control-allow-origin" not in response.headers

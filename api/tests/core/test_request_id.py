"""Every response names its request (`X-Request-ID`), and so does every log line written for it."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from backend_app.core.config import get_settings
from backend_app.core.logging import RequestIdFilter, make_formatter, request_id_var
from backend_app.core.middleware import RequestIdMiddleware
from devtools.devstack import LocalStack
from tests.accounts import PASSWORD, registration
from tests.processes import web_server

GENERATED = re.compile(r"[0-9a-f]{32}")


async def test_a_sane_request_id_is_echoed(client: httpx.AsyncClient) -> None:
    for sent in ("abc-123", "2f1c.9:trace_ID-7", "x" * 128):
        response = await client.get("/health", headers={"X-Request-ID": sent})
        assert response.headers["x-request-id"] == sent


@pytest.mark.parametrize(
    "sent",
    ["x" * 129, "has spaces", "semi;colon", 'quo"te', "a\tb", "", "é-accent".encode()],
)
async def test_an_insane_request_id_is_replaced(client: httpx.AsyncClient, sent: str | bytes) -> None:
    response = await client.get("/health", headers={"X-Request-ID": sent})
    assert GENERATED.fullmatch(response.headers["x-request-id"]), response.headers["x-request-id"]
    assert response.headers.get_list("x-request-id") == [response.headers["x-request-id"]]


async def test_a_line_break_in_the_request_id_never_reaches_the_response() -> None:
    """httpx refuses to send a newline in a header, so this goes straight to the ASGI app."""
    sent: list[dict] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> dict:
        return {"type": "http.request", "body": b""}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/", "headers": [(b"x-request-id", b"abc\r\nX-Evil: 1")]}
    await RequestIdMiddleware(app)(scope, receive, send)  # type: ignore[arg-type]
    assert GENERATED.fullmatch(dict(sent[0]["headers"])[b"x-request-id"].decode())


async def test_without_one_each_request_gets_its_own(client: httpx.AsyncClient) -> None:
    first = (await client.get("/health")).headers["x-request-id"]
    second = (await client.get("/health")).headers["x-request-id"]
    assert GENERATED.fullmatch(first)
    assert GENERATED.fullmatch(second)
    assert first != second


async def test_errors_carry_the_request_id(client: httpx.AsyncClient) -> None:
    missing = await client.get("/api/jobs/999999", headers={"X-Request-ID": "not-found-1"})
    no_route = await client.get("/no/such/route", headers={"X-Request-ID": "no-route-1"})
    too_large = await client.post(
        "/api/analytics/events",
        content=b" " * (get_settings().max_json_body_bytes + 1),
        headers={"content-type": "application/json", "X-Request-ID": "too-large-1"},
    )
    assert (missing.status_code, missing.headers["x-request-id"]) == (404, "not-found-1")
    assert (no_route.status_code, no_route.headers["x-request-id"]) == (404, "no-route-1")
    assert (too_large.status_code, too_large.headers["x-request-id"]) == (413, "too-large-1")


async def test_log_lines_written_during_a_request_carry_its_id() -> None:
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    handler.addFilter(RequestIdFilter())
    log = logging.getLogger("backend_app.tests.request_id")
    log.addHandler(handler)
    log.setLevel(logging.INFO)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        log.info("inside")
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> dict:
        return {"type": "http.request", "body": b""}

    async def send(message: dict) -> None:
        pass

    try:
        scope = {"type": "http", "method": "GET", "path": "/", "headers": [(b"x-request-id", b"trace-42")]}
        await RequestIdMiddleware(app)(scope, receive, send)  # type: ignore[arg-type]
        log.info("outside")
    finally:
        log.removeHandler(handler)
    assert [(r.getMessage(), r.request_id) for r in records] == [("inside", "trace-42"), ("outside", "-")]  # type: ignore[attr-defined]
    assert request_id_var.get() == "-"


def test_the_formats_name_the_request() -> None:
    record = logging.LogRecord("backend_app.x", logging.WARNING, __file__, 1, "hello %s", ("there",), None)
    token = request_id_var.set("abc")
    try:
        RequestIdFilter().filter(record)
    finally:
        request_id_var.reset(token)
    assert make_formatter("text").format(record).endswith(" WARNING backend_app.x [abc]: hello there")
    line = json.loads(make_formatter("json").format(record))
    assert {k: line[k] for k in ("level", "logger", "message", "request_id")} == {
        "level": "WARNING",
        "logger": "backend_app.x",
        "message": "hello there",
        "request_id": "abc",
    }
    assert line["time"]


async def test_the_web_process_writes_json_lines_with_the_request_id(stack: LocalStack, tmp_path: Path) -> None:
    """LOG_FORMAT=json through the Procfile's own web line: the start-up line is outside any
    request ("-"); a warning written while a request is handled names that request."""
    server, base_url = web_server(tmp_path, env={"LOG_FORMAT": "json", "LOG_LEVEL": "INFO"})
    server.start()
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
            registered = await client.post(
                "/api/auth/register",
                json=registration("ada"),
            )
            assert registered.status_code == 201, registered.text
            login = await client.post("/api/auth/login", json={"email": "ada@example.com", "password": PASSWORD})
            refresh_token = login.json()["refresh_token"]
            assert (await client.post("/api/auth/refresh", json={"refresh_token": refresh_token})).status_code == 200
            # The same refresh token again: refused, and logged as a warning.
            reused = await client.post(
                "/api/auth/refresh", json={"refresh_token": refresh_token}, headers={"X-Request-ID": "reuse-check-1"}
            )
            assert reused.status_code == 401
            assert reused.headers["x-request-id"] == "reuse-check-1"
    finally:
        server.stop()

    ours = []
    for line in server.output().splitlines():
        if line.startswith("{"):
            ours.append(json.loads(line))
    assert ours, server.output()
    for entry in ours:
        assert {"time", "level", "logger", "message", "request_id"} <= entry.keys(), entry
    startup = [e for e in ours if e["logger"] == "backend_app.main" and e["message"].startswith("database primary")]
    assert startup, ours
    assert startup[0]["request_id"] == "-"
    assert startup[0]["level"] == "INFO"
    reuse = [e for e in ours if "rotated refresh token was presented again" in e["message"]]
    assert len(reuse) == 1, ours
    assert reuse[0]["request_id"] == "reuse-check-1"
    assert reuse[0]["level"] == "WARNING"
    assert reuse[0]["logger"] == "backend_app.auth.service"
    # Uvicorn's access line for that request is a JSON line that names it too.
    access = [e for e in ours if e["logger"] == "uvicorn.access" and e["request_id"] == "reuse-check-1"]
    assert len(access) == 1, ours
    assert '"POST /api/auth/refresh HTTP/1.1" 401' in access[0]["message"]

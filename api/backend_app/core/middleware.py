"""ASGI middleware every response passes through: request ids, request body limits, security
headers and the error body of an unexpected exception.

All are pure ASGI (no BaseHTTPMiddleware), so a streaming body or response is never buffered.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Mapping

import secure
from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend_app.core.errors import error_body
from backend_app.core.logging import MAX_REQUEST_ID_LENGTH, request_id_var

logger = logging.getLogger(__name__)

# The documentation pages run Swagger UI / ReDoc, served by the app itself, so they get a
# policy that allows this origin's scripts (and the pages' own inline script, by its hash);
# every other response is data and may load nothing at all.
DOCUMENTATION_PATHS = ("/docs", "/redoc")
INTERNAL_ERROR_MESSAGE = "Something went wrong on our side; it has been logged. Retry later."


def documentation_policy(*script_hashes: str) -> str:
    """The Content-Security-Policy of a documentation page: its own origin's scripts and the
    inline scripts with these `sha256-...` hashes; styles inline too (both UIs set them)."""
    return _documentation_csp(*script_hashes).header_value


def _documentation_csp(*script_hashes: str) -> secure.ContentSecurityPolicy:
    script_sources = ["'self'", *(f"'{digest}'" for digest in script_hashes)]
    return (
        secure.ContentSecurityPolicy()
        .default_src("'none'")
        .script_src(*script_sources)
        .style_src("'self'", "'unsafe-inline'")
        .img_src("'self'", "data:")
        .font_src("'self'")
        .connect_src("'self'")
        .worker_src("'self'", "blob:")
        .base_uri("'none'")
        .form_action("'none'")
        .frame_ancestors("'none'")
    )


REQUEST_ID_HEADER = b"x-request-id"
# What a client's own id may be: anything else (too long, spaces, line breaks, quotes) could
# forge or break log lines, so it is replaced by one of ours.
SANE_REQUEST_ID = re.compile(rf"[A-Za-z0-9._:-]{{1,{MAX_REQUEST_ID_LENGTH}}}")


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            candidate = value.decode("latin-1")
            if SANE_REQUEST_ID.fullmatch(candidate):
                return candidate
            break
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Every request gets an id: the client's `X-Request-ID` when it is sane, else a new one
    (32 hex digits). It is in `request_id_var` (and so on every log line) while the request
    is handled, and in the `X-Request-ID` header of every response, errors included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        header = (REQUEST_ID_HEADER, request_id.encode("latin-1"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *((name, value) for name, value in message.get("headers", []) if name.lower() != REQUEST_ID_HEADER),
                    header,
                ]
            await send(message)

        token = request_id_var.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)


def _too_large_detail(limit: int) -> str:
    return f"The request body is larger than this endpoint accepts ({limit} bytes)."


def _json_response(status: int, content: object, *extra_headers: tuple[bytes, bytes]) -> tuple[Message, Message]:
    body = json.dumps(content).encode()
    start: Message = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *extra_headers,
        ],
    }
    return start, {"type": "http.response.body", "body": body}


def _payload_too_large(limit: int) -> tuple[Message, Message]:
    # The rest of the body is not read: the connection ends with this answer.
    return _json_response(413, error_body(413, _too_large_detail(limit)), (b"connection", b"close"))


class BodyTooLarge(HTTPException):
    """Raised into the app when a body without Content-Length grows past the limit. An
    HTTPException, so FastAPI's body parsing passes it on as the 413 it is (any other error
    there becomes a 400)."""

    def __init__(self, limit: int) -> None:
        # Connection: close, so the server stops reading the rest instead of parsing it away.
        super().__init__(status_code=413, detail=_too_large_detail(limit), headers={"Connection": "close"})


class BodyLimitMiddleware:
    """Refuse a request body over its route's limit with 413, before the app reads it.

    A declared `Content-Length` over the limit is answered at once, without reading a byte;
    a chunked body is counted as it arrives and cut off at the limit. `limits` maps a path
    to its own limit (uploads); every other path gets `default_limit` (JSON bodies), which
    keeps parsing short: a 1 MiB JSON document parses in milliseconds, so no request can
    hold the event loop with a huge one.
    """

    def __init__(self, app: ASGIApp, *, default_limit: int, limits: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.default_limit = default_limit
        self.limits = dict(limits or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = self.limits.get(scope["path"], self.default_limit)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(send, limit)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        tracking_send = _TrackingSend(send)
        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not tracking_send.response_started:
                await _refuse(send, limit)


class _TrackingSend:
    """An ASGI `send` that remembers whether the response has started (after which an error
    answer can no longer be sent in its place)."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.response_started = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.response_started = True
        await self.send(message)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _refuse(send: Send, limit: int) -> None:
    start, body = _payload_too_large(limit)
    await send(start)
    await send(body)


def _api_headers() -> list[tuple[bytes, bytes]]:
    headers = (
        secure.Secure(
            csp=secure.ContentSecurityPolicy().default_src("'none'").frame_ancestors("'none'"),
            hsts=secure.StrictTransportSecurity().max_age(31536000).include_subdomains(),
            xfo=secure.XFrameOptions().deny(),
            xcto=secure.XContentTypeOptions().nosniff(),
            referrer=secure.ReferrerPolicy().no_referrer(),
            # Media and JSON are read by browser frontends on other origins (CORS governs them).
            corp=secure.CrossOriginResourcePolicy().cross_origin(),
        )
    ).headers
    return [(name.lower().encode(), value.encode()) for name, value in headers.items()]


def _documentation_headers() -> list[tuple[bytes, bytes]]:
    headers = (
        secure.Secure(
            csp=_documentation_csp(),
            xfo=secure.XFrameOptions().deny(),
            xcto=secure.XContentTypeOptions().nosniff(),
            referrer=secure.ReferrerPolicy().no_referrer(),
        )
    ).headers
    return [(name.lower().encode(), value.encode()) for name, value in headers.items()]


class SecurityHeadersMiddleware:
    """The standard security headers on every response (built with the `secure` library)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.api_headers = _api_headers()
        self.documentation_headers = _documentation_headers()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = self.documentation_headers if scope["path"].startswith(DOCUMENTATION_PATHS) else self.api_headers

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [
                    *message.get("headers", []),
                    *((name, value) for name, value in extra if name not in present),
                ]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class InternalErrorMiddleware:
    """An exception no handler took becomes a 500 in the one error body, inside the CORS and
    security-header middleware (Starlette's own 500 is answered outside all of them, so a
    browser on another origin could not read it). The exception is raised on, to be logged
    with its traceback by the server; the client sees no trace of it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tracking_send = _TrackingSend(send)
        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            if not tracking_send.response_started:
                start, body = _json_response(500, error_body(500, INTERNAL_ERROR_MESSAGE))
                await send(start)
                await send(body)
            raise

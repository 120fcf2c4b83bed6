"""The ASGI middleware that hands a committed write's WAL position back to the client."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend_app.db.position import POSITION_COOKIE, POSITION_HEADER, format_lsn


class DatabasePositionMiddleware:
    """Puts a committed write's WAL position on the response: header for API clients,
    cookie for browsers. Sent back, it lets the next read see the write."""

    def __init__(self, app: ASGIApp, *, cookie_max_age: int) -> None:
        self.app = app
        self.cookie_max_age = cookie_max_age

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_position(message: Message) -> None:
            if message["type"] == "http.response.start":
                position = scope.get("state", {}).get("db_position")
                if position:
                    value = format_lsn(position)
                    headers = MutableHeaders(scope=message)
                    headers.append(POSITION_HEADER, value)
                    headers.append(
                        "set-cookie",
                        f"{POSITION_COOKIE}={value}; Max-Age={self.cookie_max_age}; Path=/; HttpOnly; SameSite=Lax",
                    )
            await send(message)

        await self.app(scope, receive, send_with_position)

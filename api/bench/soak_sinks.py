"""What the soak's workers deliver to: a real SMTP server and a push webhook, both recording."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class ReceivedEmail:
    to: str
    subject: str
    message_id: str
    at: float


@dataclass
class SmtpInbox:
    """An SMTP server (aiosmtpd) in this process that keeps every message it accepts."""

    port: int
    messages: list[ReceivedEmail] = field(default_factory=list)
    data_delay: float = 0.0  # seconds the server takes before accepting a message
    taking: int = 0  # messages received and not yet accepted (while data_delay is set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _controller: Any = None

    async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:
        if self.data_delay:
            # A slow server: the message is on the wire, not yet accepted (no 250 reply).
            self.taking += 1
            try:
                await asyncio.sleep(self.data_delay)
            finally:
                self.taking -= 1
        message = message_from_bytes(envelope.content, _class=EmailMessage, policy=default_policy)
        received = ReceivedEmail(
            to=str(message["To"] or ""),
            subject=str(message["Subject"] or ""),
            message_id=str(message["Message-ID"] or "").strip(),
            at=time.monotonic(),
        )
        with self._lock:
            self.messages.append(received)
        return "250 Message accepted for delivery"

    def snapshot(self) -> list[ReceivedEmail]:
        with self._lock:
            return list(self.messages)

    def has_message_id(self, task_id: str) -> bool:
        prefix = f"<{task_id}@"
        with self._lock:
            return any(m.message_id.startswith(prefix) for m in self.messages)

    def start(self) -> None:
        from aiosmtpd.controller import Controller

        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@dataclass(frozen=True)
class ReceivedPush:
    token: str
    platform: str
    title: str
    body: str
    data: str  # canonical JSON
    at: float


class PushEndpoint:
    """`POST /push` with the webhook provider's JSON; answers 200 and keeps each push.

    Like a provider that honours the `Idempotency-Key` header, a repeat of a key already
    delivered is answered 200 and not delivered again (counted in `replays`): a worker killed
    after a push was taken and before it was recorded sends it again with the same key.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.pushes: list[ReceivedPush] = []
        self.delivered_keys: set[str] = set()
        self.replays = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/push"

    def snapshot(self) -> list[ReceivedPush]:
        with self._lock:
            return list(self.pushes)

    def has_push(self, token: str, data: dict[str, Any]) -> bool:
        wanted = json.dumps(data, sort_keys=True)
        with self._lock:
            return any(p.token == token and p.data == wanted for p in self.pushes)

    def start(self) -> None:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    payload = json.loads(self.rfile.read(length))
                    push = ReceivedPush(
                        token=str(payload["token"]),
                        platform=str(payload.get("platform", "")),
                        title=str(payload.get("title", "")),
                        body=str(payload.get("body", "")),
                        data=json.dumps(payload.get("data") or {}, sort_keys=True),
                        at=time.monotonic(),
                    )
                except (ValueError, KeyError, TypeError):
                    self.send_response(400)
                    self.end_headers()
                    return
                if self.path != "/push":
                    self.send_response(404)
                    self.end_headers()
                    return
                key = self.headers.get("Idempotency-Key")
                with endpoint._lock:
                    if key is not None and key in endpoint.delivered_keys:
                        endpoint.replays += 1
                    else:
                        endpoint.pushes.append(push)
                        if key is not None:
                            endpoint.delivered_keys.add(key)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"ok": true}')

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="soak-push", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

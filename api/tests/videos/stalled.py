"""The stalled-upload attack of issue 13, over raw sockets: each upload sends its headers
(`Content-Length: 100000`), the `file` part's header and 100 bytes, then nothing."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx

if TYPE_CHECKING:
    from devtools.devstack import LocalStack

BOUNDARY = "stalled-upload-boundary"
DECLARED_LENGTH = 100_000
SENT_BYTES = 100


def stalled_upload_request(host: str, token: str) -> bytes:
    part = (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="file"; filename="stalled.mp4"\r\n'
        "Content-Type: video/mp4\r\n\r\n"
    ).encode() + b"\0" * SENT_BYTES
    head = (
        "POST /api/videos/upload HTTP/1.1\r\n"
        f"Host: {host}\r\n"
        f"Authorization: Bearer {token}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {DECLARED_LENGTH}\r\n\r\n"
    ).encode()
    return head + part


@dataclass
class StalledUpload:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def status(self, wait: float = 0.05) -> int | None:
        """The status the server answered with, 0 if it closed the connection without one,
        or None while it is still waiting for the rest of the body (after `wait` seconds)."""
        try:
            line = await asyncio.wait_for(self.reader.readline(), wait)
        except TimeoutError:
            return None
        except ConnectionError:
            return 0
        parts = line.split()
        return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else 0

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


async def open_stalled_uploads(base_url: str, tokens: list[str]) -> list[StalledUpload]:
    """One stalled upload per token (repeat a token for several by one user)."""
    address = urlsplit(base_url)
    assert address.hostname is not None
    assert address.port is not None

    async def one(token: str) -> StalledUpload:
        reader, writer = await asyncio.open_connection(address.hostname, address.port)
        writer.write(stalled_upload_request(address.netloc, token))
        await writer.drain()
        return StalledUpload(reader, writer)

    return list(await asyncio.gather(*(one(token) for token in tokens)))


async def statuses(uploads: list[StalledUpload], wait: float = 0.05) -> list[int | None]:
    return list(await asyncio.gather(*(upload.status(wait) for upload in uploads)))


async def close_all(uploads: list[StalledUpload]) -> None:
    await asyncio.gather(*(upload.close() for upload in uploads))


def seed_accounts(stack: LocalStack, prefix: str, count: int, *, is_admin: bool = False) -> list[str]:
    """`count` accounts inserted on the primary at once; their access tokens."""
    from backend_app.core.security import create_access_token

    assert stack.primary is not None
    output = stack.primary.psql(
        "INSERT INTO users (email, username, first_name, last_name, password_hash, role, is_admin)"
        f" SELECT '{prefix}' || n || '@example.com', '{prefix}' || n, 'Test', 'User', 'x', 'job_seeker', {is_admin}"
        f" FROM generate_series(1, {count}) AS n RETURNING id"
    )
    return [create_access_token(int(line)) for line in output.splitlines() if line.strip().isdigit()]


async def primary_in_use(client: httpx.AsyncClient, admin_token: str) -> int:
    """Primary connections in use, from /health/database (asked as an administrator)."""
    response = await client.get("/health/database", headers={"Authorization": f"Bearer {admin_token}"})
    return int(response.json()["primary"]["pool"]["in_use"])

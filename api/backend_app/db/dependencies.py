"""The FastAPI session dependencies and their annotated types.

Routes declare what they need with the typed aliases:

    async def list_users(session: ReadSession): ...      # a replica, never commits
    async def register(session: WriteSession): ...       # the primary, commits on success
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from backend_app.db.lifecycle import get_database_router
from backend_app.db.position import POSITION_COOKIE, POSITION_HEADER, position_from_text
from backend_app.db.sessions import AsyncReadSession, AsyncWriteSession


def _remember_position(request: Request, position: int) -> None:
    # Never older than what the client sent: with two writes in flight, the response that
    # arrives last must not move the cookie back behind the other one.
    try:
        sent = request_position(request) or 0
    except HTTPException:
        sent = 0
    state = request.scope.setdefault("state", {})
    state["db_position"] = max(position, sent, state.get("db_position") or 0)


def request_position(request: Request) -> int | None:
    """The newest WAL position the client says it wrote (header or cookie)."""
    positions = []
    header = request.headers.get(POSITION_HEADER)
    if header:
        try:
            positions.append(position_from_text(header))
        except ValueError:
            raise HTTPException(
                status_code=400,
                detail=f"{POSITION_HEADER} must be a WAL position such as 0/16B3748, as sent by a previous response.",
            ) from None
    cookie = request.cookies.get(POSITION_COOKIE)
    if cookie:
        with contextlib.suppress(ValueError):  # a stale or mangled cookie must not break pages
            positions.append(position_from_text(cookie))
    known = [p for p in positions if p is not None]
    return max(known) if known else None


async def get_db_write(request: Request) -> AsyncIterator[AsyncWriteSession]:
    async with get_database_router().write_session(
        record_position=lambda position: _remember_position(request, position)
    ) as session:
        yield session


async def get_db_read(request: Request) -> AsyncIterator[AsyncReadSession]:
    async with get_database_router().read_session(position=request_position(request)) as session:
        yield session


get_db_replica = get_db_read

# scope="function" runs the commit before the response is sent, so a 2xx means committed.
WriteSession = Annotated[AsyncWriteSession, Depends(get_db_write, scope="function")]
ReadSession = Annotated[AsyncReadSession, Depends(get_db_read, scope="function")]

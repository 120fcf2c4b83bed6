"""Exception handlers that keep outages and bad input out of the 500 path."""

from __future__ import annotations

import json
import logging
from typing import Any, TypeVar

from fastapi import FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from backend_app.core.read_replica import (
    CONNECTION_ERRORS,
    PrimaryUnavailableError,
    ReadCapacityError,
    is_connection_error,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

DATABASE_RETRY_AFTER_SECONDS = 5
READ_CAPACITY_RETRY_AFTER_SECONDS = 1


async def get_or_404(session: AsyncSession, model: type[T], ident: int, *, detail: str, lock: bool = False) -> T:
    """The row with primary key `ident`, or a 404 with `detail`: the body of every validation dependency."""
    row = await session.get(model, ident, with_for_update=lock)
    if row is None:
        raise HTTPException(status_code=404, detail=detail)
    return row


def service_unavailable(detail: str, retry_after: int) -> JSONResponse:
    return JSONResponse(status_code=503, content={"detail": detail}, headers={"Retry-After": str(retry_after)})


def _is_bad_value(error: Exception) -> bool:
    """SQLSTATE class 22 (data exception): a value out of range or malformed, e.g. an id > int64."""
    orig = getattr(error, "orig", None)
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None) or ""
    return isinstance(error, DBAPIError) and sqlstate.startswith("22")


async def _database_error_handler(request: Request, error: Exception) -> JSONResponse:
    if _is_bad_value(error):
        return JSONResponse(status_code=422, content={"detail": "A value in the request is out of range or malformed."})
    if not is_connection_error(error):
        raise error
    logger.warning("database unavailable during %s %s: %s", request.method, request.url.path, error)
    if isinstance(error, ReadCapacityError):
        return service_unavailable(
            "The read replicas are unavailable and the primary is serving all the reads it can; retry shortly.",
            READ_CAPACITY_RETRY_AFTER_SECONDS,
        )
    if isinstance(error, PrimaryUnavailableError):
        return service_unavailable(
            "The primary database is unavailable, so changes cannot be saved right now; reading still works."
            " Retry shortly.",
            DATABASE_RETRY_AFTER_SECONDS,
        )
    return service_unavailable("The database is temporarily unavailable; retry shortly.", DATABASE_RETRY_AFTER_SECONDS)


class AsciiJSONResponse(JSONResponse):
    """JSON with non-ASCII characters escaped: a lone surrogate a client sent (`"\\ud800"` is
    valid JSON, but not valid UTF-8) can be echoed back without failing to encode."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


async def _validation_error_handler(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    # FastAPI's own body, rendered so that any input a client can send can be shown back.
    return AsciiJSONResponse(status_code=422, content={"detail": jsonable_encoder(error.errors())})


def install_exception_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_error_handler)
    for error_type in (*CONNECTION_ERRORS, DBAPIError):
        app.add_exception_handler(error_type, _database_error_handler)

"""Exception handlers that keep outages and bad input out of the 500 path, and the one body
of every 4xx and 5xx: `{"detail": "...", "code": "..."}`, a sentence a user can be shown and
a stable snake_case code a program can branch on. A 422 adds `errors`, the list of
`{"loc", "msg", "type"}` whether the request schema or a route's own rule refused the input.

A route raises `HTTPException` for the default code of its status (`not_found`, `conflict`,
...) or `ApiError(status, detail, code="...")` for a code of its own."""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any, TypeVar

from fastapi import FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from backend_app.core.rate_limit import RateLimited
from backend_app.db.errors import CONNECTION_ERRORS, PrimaryUnavailableError, ReadCapacityError, is_connection_error

logger = logging.getLogger(__name__)

T = TypeVar("T")

BAD_VALUE_MESSAGE = "A value in the request is out of range or malformed."
VALIDATION_FAILED_MESSAGE = "The request is invalid."

# The code of an error whose raiser named none; any other status gets its reason phrase in
# snake_case (410 "gone").
DEFAULT_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}
DATABASE_UNAVAILABLE = "database_unavailable"


def _phrase(status_code: int) -> str:
    try:
        return HTTPStatus(status_code).phrase
    except ValueError:
        return "Client Error" if status_code < 500 else "Server Error"


def default_code(status_code: int) -> str:
    if status_code in DEFAULT_CODES:
        return DEFAULT_CODES[status_code]
    return "_".join("".join(c if c.isalnum() else " " for c in _phrase(status_code).lower()).split())


def error_body(status_code: int, detail: str, code: str | None = None) -> dict[str, str]:
    """The body of every 4xx and 5xx (a 422 adds `errors`)."""
    return {"detail": detail, "code": code or default_code(status_code)}


class ApiError(HTTPException):
    """An HTTPException with a code of its own:
    `raise ApiError(409, "This username is taken.", code="username_taken")`."""

    def __init__(
        self, status_code: int, detail: str, *, code: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status_code=status_code, detail=detail, headers=headers)
        self.code = code or default_code(status_code)


DATABASE_RETRY_AFTER_SECONDS = 5
READ_CAPACITY_RETRY_AFTER_SECONDS = 1


async def get_or_404(session: AsyncSession, model: type[T], ident: int, *, detail: str, lock: bool = False) -> T:
    """The row with primary key `ident`, or a 404 with `detail`: the body of every validation dependency."""
    row = await session.get(model, ident, with_for_update=lock)
    if row is None:
        raise HTTPException(status_code=404, detail=detail)
    return row


def invalid(location: tuple[str | int, ...], message: str) -> RequestValidationError:
    """A 422 for a rule a route checks itself, in the shape of every other 422:
    `raise invalid(("body", "recipient_id"), "You cannot message yourself.")`."""
    return RequestValidationError([{"type": "value_error", "loc": location, "msg": message}])


def service_unavailable(detail: str, retry_after: int, code: str = DATABASE_UNAVAILABLE) -> JSONResponse:
    return JSONResponse(
        status_code=503, content=error_body(503, detail, code), headers={"Retry-After": str(retry_after)}
    )


def validation_failed(errors: list[dict[str, Any]]) -> JSONResponse:
    """The 422: what went wrong in one sentence, then each refused value."""
    body = {**error_body(422, VALIDATION_FAILED_MESSAGE), "errors": jsonable_encoder(errors)}
    # Any input a client can send can be shown back (see AsciiJSONResponse).
    return AsciiJSONResponse(status_code=422, content=body)


def _is_bad_value(error: Exception) -> bool:
    """SQLSTATE class 22 (data exception): a value out of range or malformed, e.g. an id > int64."""
    orig = getattr(error, "orig", None)
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None) or ""
    return isinstance(error, DBAPIError) and sqlstate.startswith("22")


async def _database_error_handler(request: Request, error: Exception) -> JSONResponse:
    if _is_bad_value(error):
        # The request schema bounds every value the database takes, so this is a last resort.
        return validation_failed([{"type": "value_error", "loc": ["request"], "msg": BAD_VALUE_MESSAGE}])
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


# Fields whose value a 422 never shows back (the response may end up in logs or a browser).
SECRET_FIELDS = frozenset(
    {"password", "current_password", "new_password", "token", "reset_token", "refresh_token", "secret"}
)
# The most of an input a 422 shows back; the rest is cut (a 20 MB string came back whole).
ECHOED_INPUT_CHARS = 200


def _shown_input(value: Any) -> Any:
    if isinstance(value, str) and len(value) > ECHOED_INPUT_CHARS:
        return value[:ECHOED_INPUT_CHARS] + "…"
    if isinstance(value, dict | list) and len(json.dumps(value, default=str)) > ECHOED_INPUT_CHARS:
        return "(not shown: too large)"
    return value


def _without_secrets(error: dict[str, Any]) -> dict[str, Any]:
    shown = {key: value for key, value in error.items() if key != "input"}
    location = error.get("loc", ())
    if "input" in error and not SECRET_FIELDS.intersection(str(part) for part in location):
        input_value = error["input"]
        if isinstance(input_value, dict):
            input_value = {k: "***" if k in SECRET_FIELDS else v for k, v in input_value.items()}
        shown["input"] = _shown_input(input_value)
    return shown


async def _validation_error_handler(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    # FastAPI's own list, without secrets or huge inputs.
    return validation_failed([_without_secrets(item) for item in error.errors()])


async def _rate_limited_handler(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RateLimited)
    return JSONResponse(
        status_code=429,
        content=error_body(429, error.detail),
        headers={"Retry-After": str(error.retry_after)},
    )


HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


async def _http_error_handler(request: Request, error: Exception) -> Response:
    """Every HTTPException (FastAPI's, Starlette's, ApiError) in the one error body."""
    assert isinstance(error, StarletteHTTPException)
    headers = dict(error.headers or {})
    if error.status_code < 400 or error.status_code in (204, 304):
        return Response(status_code=error.status_code, headers=headers)
    if error.status_code == 405 and "Allow" in headers:
        # The router's Allow names the methods of the first route whose path matched; the
        # resource has those of every route for the path (GET and PATCH /api/users/me are two).
        routes = request.app.router.routes
        headers["Allow"] = ", ".join(
            method
            for method in HTTP_METHODS
            if any(route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes)
        )
    detail = error.detail if isinstance(error.detail, str) else _phrase(error.status_code)
    body = error_body(error.status_code, detail, getattr(error, "code", None))
    return JSONResponse(status_code=error.status_code, content=body, headers=headers)


def install_exception_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, _http_error_handler)
    app.add_exception_handler(RateLimited, _rate_limited_handler)
    for error_type in (*CONNECTION_ERRORS, DBAPIError):
        app.add_exception_handler(error_type, _database_error_handler)

"""Every operation documents the errors it can answer with, in the one error body, and
takes its input in types whose documented schema says exactly what they accept.

The statuses that follow from how a route is built are added here, so no route can forget
them: 401 where a bearer token is read, 403 behind an administrators-only dependency, 404
where the path names a row, 413 wherever a body may be sent, 400 where one is read (FastAPI's
answer to a body that is not UTF-8), 400 and 503 where a database session is opened (a
malformed `X-DB-Position`, a database outage). What only the route knows (a 409 conflict,
a 429 limit, a 415 media type) it declares itself:

    @router.post("/{job_id}/apply", responses=errors(409, 429))

Every error is `ErrorBody` (`{detail, code}`); a 422 adds `errors`, the list of
`{loc, msg, type}`, also for the rules a route checks itself (`core.errors.invalid`): FastAPI's
`HTTPValidationError` component is replaced by that shape (`install_openapi`). Operation ids
are the route functions' names, which a generated client's methods are named after.

The input types below put every rule a value is held to into its schema (a JSON integer is
never `true` or `"1"`; a stored text has no NUL and its length is counted as stored, without
surrounding spaces), so a value the document allows is never refused as malformed.

The documentation pages (/docs, /redoc) run Swagger UI and ReDoc from files the app serves
itself (`backend_app/static/docs`, see its VENDORED.md): no CDN, and a Content-Security-Policy
that lets them load nothing from anywhere else.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.constants import REF_PREFIX
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from fastapi.security.base import SecurityBase
from fastapi.staticfiles import StaticFiles
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, Strict
from pydantic_core import PydanticCustomError

from backend_app.core.errors import DEFAULT_CODES, VALIDATION_FAILED_MESSAGE
from backend_app.core.middleware import documentation_policy

ERROR_DESCRIPTIONS = {
    400: "The request is malformed (a body that is not UTF-8, a bad `X-DB-Position` header).",
    401: "Not signed in, or the access token is invalid or expired.",
    403: "Signed in, but not allowed to do this.",
    404: "No such resource (or not one this caller may see).",
    408: "The client stopped sending the request body.",
    409: "Conflicts with the current state (already exists, already done).",
    413: "The request body is larger than this endpoint accepts.",
    415: "The uploaded file is not of a supported type.",
    429: "Too many requests: wait for the `Retry-After` seconds.",
    503: "A database or queue is briefly unavailable: retry after `Retry-After` seconds.",
}


ERROR_CODE_PATTERN = r"^[a-z][a-z0-9_]*$"


class ErrorBody(BaseModel):
    """The body of every 4xx and 5xx (a 422 adds `errors`)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"detail": "No such job.", "code": "not_found"}]})

    detail: str = Field(description="What went wrong, in words a user can be shown.", examples=["No such job."])
    code: str = Field(
        description="What went wrong, for a program: a stable snake_case code. By default the status's"
        f" ({', '.join(f'{status} `{code}`' for status, code in DEFAULT_CODES.items())}); an operation may"
        " answer a more specific one (a database outage's 503 is `database_unavailable`).",
        pattern=ERROR_CODE_PATTERN,
        examples=["not_found"],
    )


# The component every 422 refers to (FastAPI's name, so no route can point elsewhere).
VALIDATION_ERROR_COMPONENT = "HTTPValidationError"
VALIDATION_ERROR_SCHEMA: dict[str, Any] = {
    "title": VALIDATION_ERROR_COMPONENT,
    "description": "A 422: the one error body, and each value that was refused.",
    "type": "object",
    "required": ["detail", "code", "errors"],
    "properties": {
        "detail": {"type": "string", "title": "Detail", "examples": [VALIDATION_FAILED_MESSAGE]},
        "code": {"type": "string", "title": "Code", "const": DEFAULT_CODES[422]},
        "errors": {
            "type": "array",
            "title": "Errors",
            "description": "One entry per refused value: where (`loc`), why (`msg`) and a stable `type`.",
            "items": {"$ref": f"{REF_PREFIX}ValidationError"},
        },
    },
    "examples": [
        {
            "detail": VALIDATION_FAILED_MESSAGE,
            "code": DEFAULT_CODES[422],
            "errors": [
                {
                    "loc": ["body", "salary_min"],
                    "msg": "Input should be greater than or equal to 0",
                    "type": "greater_than_equal",
                    "input": -5,
                    "ctx": {"ge": 0},
                }
            ],
        }
    ],
}
# FastAPI's component for one entry of a 422's `errors`: documented here, as it defines no text of its own.
VALIDATION_ERROR_ITEM_DOCS: dict[str, Any] = {
    "description": "One refused value: where it is (`loc`: `body`, `query`, `path` or `header`, then the field's"
    " path), why (`msg`, for people), a stable `type`, the value sent (`input`, left out for secrets) and the"
    " rule's parameters (`ctx`).",
    "examples": [VALIDATION_ERROR_SCHEMA["examples"][0]["errors"][0]],
}

# The 422 of a route FastAPI does not validate itself (one that reads its own body).
VALIDATION_ERROR_RESPONSE: dict[str, Any] = {
    "description": "Validation Error",
    "content": {"application/json": {"schema": {"$ref": f"{REF_PREFIX}{VALIDATION_ERROR_COMPONENT}"}}},
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route for the error statuses only it knows about."""
    return {status: {"model": ErrorBody, "description": ERROR_DESCRIPTIONS[status]} for status in statuses}


def _takes_a_body(dependant: Dependant) -> bool:
    return bool(dependant.body_params) or any(_takes_a_body(sub) for sub in dependant.dependencies)


def dependency_calls(dependant: Dependant) -> Iterator[Any]:
    """Every callable a route depends on, directly or through other dependencies."""
    for dependency in dependant.dependencies:
        yield dependency.call
        yield from dependency_calls(dependency)


def document_errors(
    router: APIRouter,
    *,
    sessions: Iterable[Callable[..., Any]],
    administrators_only: Iterable[Callable[..., Any]] = (),
    sign_in_optional: Iterable[Callable[..., Any]] = (),
) -> None:
    """Add the statuses each route of `router` can answer with by construction, and mark
    sign-in as optional where a route serves anonymous callers too. Call it before the
    router is included in the app (inclusion builds the response models)."""
    session_calls = set(sessions)
    admin_calls = set(administrators_only)
    optional_calls = set(sign_in_optional)
    for route in router.routes:
        if not isinstance(route, APIRoute):
            continue
        calls = list(dependency_calls(route.dependant))
        statuses = set()
        if any(isinstance(call, SecurityBase) for call in calls):
            statuses.add(401)
        if admin_calls.intersection(calls):
            statuses.add(403)
        if "{" in route.path_format:
            statuses.add(404)
        if route.methods - {"GET", "HEAD", "OPTIONS"}:
            statuses.add(413)  # core.middleware.BodyLimitMiddleware reads every body first
        if session_calls.intersection(calls):
            statuses.update((400, 503))
        if _takes_a_body(route.dependant):
            statuses.add(400)  # FastAPI's answer to a body it cannot read (not UTF-8)
        for status, response in errors(*sorted(statuses)).items():
            route.responses.setdefault(status, response)
        if optional_calls.intersection(calls):
            # OpenAPI's way to say "a token, or none": an empty requirement among the options
            # (FastAPI appends it to the bearer requirement it generates).
            route.openapi_extra = {**(route.openapi_extra or {}), "security": [{}]}


def operation_id(route: APIRoute) -> str:
    """A route's operationId: its function's name (`create_job`), stable and readable, the name
    of a generated client's method. tests/core/test_openapi.py holds them unique."""
    return route.name


def install_openapi(app: FastAPI) -> None:
    """Make the app's OpenAPI document describe the one error body on every 422 too."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = FastAPI.openapi(app)
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            if VALIDATION_ERROR_COMPONENT in schemas:
                schemas[VALIDATION_ERROR_COMPONENT] = VALIDATION_ERROR_SCHEMA
            if "ValidationError" in schemas:
                schemas["ValidationError"] = {**schemas["ValidationError"], **VALIDATION_ERROR_ITEM_DOCS}
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


DOCUMENTATION_ASSETS = Path(__file__).resolve().parents[1] / "static" / "docs"
DOCUMENTATION_ASSETS_URL = "/static/docs"
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def _page(response: HTMLResponse) -> tuple[bytes, dict[str, str]]:
    """The page and a policy that allows its own inline scripts (by hash) and this origin's files."""
    html = bytes(response.body)
    hashes = [
        "sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        for script in _INLINE_SCRIPT.findall(html.decode())
    ]
    return html, {"Content-Security-Policy": documentation_policy(*hashes)}


def install_documentation(app: FastAPI, *, openapi_url: str = "/openapi.json") -> None:
    """Swagger UI at /docs and ReDoc at /redoc, with their scripts served by the app itself."""
    swagger, swagger_headers = _page(
        get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{DOCUMENTATION_ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCUMENTATION_ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{DOCUMENTATION_ASSETS_URL}/favicon-32x32.png",
            # Swagger UI would otherwise send the document to an outside validator for a badge.
            swagger_ui_parameters={"validatorUrl": None},
        )
    )
    redoc, redoc_headers = _page(
        get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{DOCUMENTATION_ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{DOCUMENTATION_ASSETS_URL}/favicon-32x32.png",
            with_google_fonts=False,
        )
    )

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return HTMLResponse(swagger, headers=swagger_headers)

    @app.get("/redoc", include_in_schema=False)
    async def redoc_page() -> HTMLResponse:
        return HTMLResponse(redoc, headers=redoc_headers)

    app.mount(DOCUMENTATION_ASSETS_URL, StaticFiles(directory=DOCUMENTATION_ASSETS), name="documentation-assets")


# The largest integer a JSON number holds exactly everywhere (a double's 53 bits: JavaScript's
# MAX_SAFE_INTEGER, and what a schema validator compares with), far inside PostgreSQL's bigint.
JSON_INT_MAX = 2**53 - 1

# A row's id (a bigint identity) in a path or query.
RowId = Annotated[int, Field(ge=1, le=JSON_INT_MAX)]


def _json_integer(value: Any) -> Any:
    # JSON Schema's integer: a number with no fraction (12.0 is one); never true/false or "12".
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    return value


def json_int(*, ge: int, le: int) -> Any:
    """An integer in a JSON body, from `ge` to `le` (pydantic alone would take `true` as 1 and
    `"12"` as 12). The bounds come before the check, or the schema would show them unnamed."""
    return Annotated[int, Field(ge=ge, le=le), BeforeValidator(_json_integer)]


JsonRowId = json_int(ge=1, le=JSON_INT_MAX)


def _json_string(value: Any) -> Any:
    if not isinstance(value, str):
        raise PydanticCustomError("datetime_type", "Input should be a valid datetime string")
    return value


# A boolean and a date-time in a JSON body: only `true`/`false`; only a string (pydantic
# alone would read a number as seconds since 1970).
JsonBool = Annotated[bool, Strict()]
JsonDatetime = Annotated[datetime, BeforeValidator(_json_string)]

# Unicode White_Space: what a trimmed text loses at either end (Python's str.strip() would
# also take U+001C..U+001F, which no regular expression engine counts as space).
WHITE_SPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
)
# The same set in a pattern, spelled out so every regular expression engine reads it alike.
_SPACE = r"\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
WHITE_SPACE_PATTERN = rf"[{_SPACE}]"
_ANY = r"[^\x00]"
_SHOWN = rf"[^\x00{_SPACE}]"  # neither NUL nor space


def _text_pattern(min_length: int, *, trimmed: bool, single_line: bool) -> str:
    """The pattern of a text: no NUL anywhere and, trimmed, at least `min_length` characters
    from its first shown character to its last (with no line break between them if single-line)."""
    if not trimmed or min_length == 0:
        return rf"^{_ANY}*$"
    if single_line:
        inner = r"[^\x00\r\n]"
        middle = rf"(?:{inner}*{_SHOWN})?" if min_length == 1 else rf"{inner}{{{min_length - 2},}}{_SHOWN}"
        return rf"^{WHITE_SPACE_PATTERN}*{_SHOWN}{middle}{WHITE_SPACE_PATTERN}*$"
    middle = "" if min_length == 1 else rf"{_ANY}{{{min_length - 2},}}{_SHOWN}"
    return rf"^{_ANY}*{_SHOWN}{middle}{_ANY}*$"


def text(*, max_length: int | None, min_length: int = 0, trimmed: bool = True, single_line: bool = False) -> Any:
    """A text the database stores or searches: at most `max_length` characters as sent, no NUL
    (PostgreSQL text cannot hold one) and, `trimmed`, kept without surrounding white space and
    at least `min_length` characters long without it; `single_line` refuses a line break inside
    (names go into email headers). The rules are checked here and stated as the schema's pattern."""
    pattern = _text_pattern(min_length, trimmed=trimmed, single_line=single_line)

    def check(value: str) -> str:
        if "\x00" in value:
            raise PydanticCustomError("string_pattern_mismatch", "must not contain NUL characters")
        if trimmed:
            value = value.strip(WHITE_SPACE)
            if len(value) < min_length:
                raise PydanticCustomError(
                    "string_too_short",
                    "String should have at least {min_length} characters",
                    {"min_length": min_length},
                )
        if single_line and ("\r" in value or "\n" in value):
            raise PydanticCustomError("string_pattern_mismatch", "must be a single line")
        return value

    return Annotated[
        str,
        Field(min_length=min_length, max_length=max_length, json_schema_extra={"pattern": pattern}),
        AfterValidator(check),
    ]

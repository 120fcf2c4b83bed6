"""The one error body (`{detail, code}`, a 422 adding `errors`) on every 4xx and 5xx, and what
a 422 shows back: the field and the problem, never a secret, never a huge input."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, HTTPException

from backend_app.core.config import Settings
from backend_app.core.errors import ApiError


async def test_a_422_never_echoes_a_password(client: httpx.AsyncClient) -> None:
    secret = "s3cret-" + "p" * 140
    response = await client.post(
        "/api/auth/register",
        json={"email": "ada@example.com", "username": "ada", "password": secret, "first_name": "Ada"},
    )
    assert response.status_code == 422
    assert "s3cret" not in response.text
    assert {error["loc"][-1] for error in response.json()["errors"]} >= {"password", "last_name"}


async def test_a_422_cuts_a_long_input(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/auth/login", json={"email": "a" * 100_000, "password": "x"})
    assert response.status_code == 422
    assert len(response.content) < 2_000
    [error] = response.json()["errors"]
    assert error["loc"] == ["body", "email"]
    assert error["input"].endswith("…")


async def test_a_rule_a_route_checks_itself_answers_in_the_same_422_shape(client: httpx.AsyncClient) -> None:
    # The password names the account: a rule between two fields, checked by the service.
    response = await client.post(
        "/api/auth/register",
        json={
            "email": "ada@example.com",
            "username": "ada",
            "password": "ada-is-my-name-1",
            "first_name": "Ada",
            "last_name": "Lovelace",
            "role": "job_seeker",
        },
    )
    assert response.status_code == 422
    assert response.json() == {
        "detail": "The request is invalid.",
        "code": "validation_failed",
        "errors": [
            {
                "type": "value_error",
                "loc": ["body", "password"],
                "msg": "Password must not contain your username or email.",
            }
        ],
    }


async def test_a_405_names_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    # GET, PATCH and DELETE /api/users/me are three routes; Starlette alone would name the first one's.
    response = await client.put("/api/users/me")

    assert response.status_code == 405
    assert response.headers["allow"] == "GET, PATCH, DELETE"
    assert response.json() == {"detail": "Method Not Allowed", "code": "method_not_allowed"}


async def test_a_schema_422_has_the_one_body_with_its_errors(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/jobs/not-a-number")

    assert response.status_code == 422
    body = response.json()
    assert set(body) == {"detail", "code", "errors"}
    assert (body["detail"], body["code"]) == ("The request is invalid.", "validation_failed")
    assert body["errors"][0]["loc"] == ["path", "job_id"]


async def test_a_malformed_json_body_is_a_422_in_the_one_body(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/auth/login", content=b'{"email": ', headers={"content-type": "application/json"})

    assert response.status_code == 422
    assert response.json()["code"] == "validation_failed"
    assert response.json()["errors"][0]["type"] == "json_invalid"


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/no/such/route", 404, "not_found"),
        ("GET", "/api/users/me", 401, "not_authenticated"),
        ("GET", "/api/jobs/999999", 404, "not_found"),
        ("DELETE", "/health", 405, "method_not_allowed"),
    ],
)
async def test_every_error_has_a_detail_and_a_code(
    client: httpx.AsyncClient, method: str, path: str, status: int, code: str
) -> None:
    response = await client.request(method, path)

    assert response.status_code == status
    body = response.json()
    assert set(body) == {"detail", "code"}
    assert body["code"] == code
    assert isinstance(body["detail"], str)
    assert body["detail"]


async def test_a_bad_position_header_is_a_400_with_its_code(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/jobs", headers={"X-DB-Position": "not-a-position"})

    assert response.status_code == 400
    assert response.json()["code"] == "bad_request"
    assert "X-DB-Position" in response.json()["detail"]


PAGE_ORIGIN = "http://localhost:5173"


@pytest.fixture
async def app_with_failing_routes(settings: Settings) -> AsyncIterator[FastAPI]:
    from backend_app.main import create_app

    application = create_app(settings.model_copy(update={"cors_origins": [PAGE_ORIGIN]}))

    @application.get("/test/api-error")
    async def api_error() -> None:
        raise ApiError(409, "This username is taken.", code="username_taken", headers={"X-Extra": "1"})

    @application.get("/test/http-exception")
    async def http_exception() -> None:
        raise HTTPException(410, detail="Gone for good.")

    @application.get("/test/bug")
    async def bug() -> None:
        raise RuntimeError("internal state nobody should see")

    async with application.router.lifespan_context(application):
        yield application


async def test_a_route_may_name_its_own_code(app_with_failing_routes: FastAPI) -> None:
    transport = httpx.ASGITransport(app=app_with_failing_routes)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        named = await client.get("/test/api-error")
        unnamed = await client.get("/test/http-exception")

    assert named.status_code == 409
    assert named.json() == {"detail": "This username is taken.", "code": "username_taken"}
    assert named.headers["x-extra"] == "1"
    assert unnamed.json() == {"detail": "Gone for good.", "code": "gone"}


async def test_an_unexpected_exception_is_a_500_in_the_one_body_that_another_origin_can_read(
    app_with_failing_routes: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    # The server still sees the exception (to log its traceback); the client never does.
    transport = httpx.ASGITransport(app=app_with_failing_routes, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get("/test/bug", headers={"Origin": PAGE_ORIGIN})

    assert response.status_code == 500
    assert response.json()["code"] == "internal_error"
    assert "internal state" not in response.text
    assert response.headers["access-control-allow-origin"] == PAGE_ORIGIN
    assert response.headers["x-content-type-options"] == "nosniff"

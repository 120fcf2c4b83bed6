"""The OpenAPI document: every operation named, summarised and its errors in the one body; the
documentation pages served from the app itself; and input types that say in their schema
exactly what they accept (a value is valid to the document's validator, the engine
schemathesis and JSON Schema clients use, if and only if the API takes it)."""

from __future__ import annotations

import re
from collections import Counter
from html.parser import HTMLParser
from typing import Any

import httpx
import jsonschema_rs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from backend_app.core.openapi import JSON_INT_MAX, JsonBool, JsonDatetime, JsonRowId, text

# Spaces of every kind, line breaks, NUL and U+001C (space to Python's str.strip(), to no
# regular expression engine), around a few letters.
CHARACTERS = st.sampled_from(list("ab \t\n\r\x00\x1c\x85\xa0\u2000\u3000\ufeff"))


def accepted(adapter: TypeAdapter[Any], value: Any) -> bool:
    try:
        adapter.validate_python(value)
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize(
    "options",
    [
        {"min_length": 3, "max_length": 20},
        {"min_length": 1, "max_length": 20, "single_line": True},
        {"min_length": 1, "max_length": 20},
        {"min_length": 0, "max_length": 20, "trimmed": False},
    ],
)
def test_a_text_is_valid_to_its_schema_exactly_when_accepted(options: dict[str, Any]) -> None:
    adapter = TypeAdapter(text(**options))
    valid = jsonschema_rs.validator_for(adapter.json_schema()).is_valid

    @settings(max_examples=1500, deadline=None)
    @given(st.text(CHARACTERS, max_size=25))
    def agree(value: str) -> None:
        assert accepted(adapter, value) == valid(value), repr(value)

    agree()


def test_a_trimmed_text_is_kept_without_its_surrounding_space() -> None:
    name = TypeAdapter(text(min_length=1, max_length=20, single_line=True))

    assert name.validate_python("\u3000 Ada \n") == "Ada"
    assert not accepted(name, "Ada\r\nBcc: victim@example.com")
    assert not accepted(name, " \xa0 ")


@pytest.mark.parametrize(
    ("adapter", "value", "expected"),
    [
        (TypeAdapter(JsonRowId), 12, True),
        (TypeAdapter(JsonRowId), 12.0, True),  # a JSON Schema integer
        (TypeAdapter(JsonRowId), True, False),
        (TypeAdapter(JsonRowId), "12", False),
        (TypeAdapter(JsonRowId), JSON_INT_MAX + 1, False),
        (TypeAdapter(JsonBool), 1, False),
        (TypeAdapter(JsonBool), "true", False),
        (TypeAdapter(JsonDatetime), "2030-01-01T00:00:00Z", True),
        (TypeAdapter(JsonDatetime), 1_900_000_000, False),
    ],
)
def test_json_values_are_taken_only_as_json_schema_types(adapter: TypeAdapter[Any], value: Any, expected: bool) -> None:
    assert accepted(adapter, value) == expected
    assert jsonschema_rs.validator_for(adapter.json_schema()).is_valid(value) == expected


ERROR_BODY_REF = "#/components/schemas/ErrorBody"
VALIDATION_ERROR_REF = "#/components/schemas/HTTPValidationError"
# The health reports are the body of their 503 too: a probe reads which dependency is down.
HEALTH_REPORTS = {
    ("/health/database", "503"): "#/components/schemas/DatabaseHealth",
    ("/health/queues", "503"): "#/components/schemas/QueuesHealth",
}


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, operation) for path, item in document["paths"].items() for method, operation in item.items()]


async def test_every_operation_has_a_stable_readable_unique_id_and_a_summary(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    ids = [operation.get("operationId") for _, _, operation in operations(document)]

    assert all(operation_id and re.fullmatch(r"[a-z][a-z0-9_]*", operation_id) for operation_id in ids), ids
    assert [name for name, count in Counter(ids).items() if count > 1] == []
    # The route function's name, not FastAPI's default with the path and method appended.
    assert document["paths"]["/api/jobs"]["post"]["operationId"] == "create_job"
    for method, path, operation in operations(document):
        assert operation.get("summary") or operation.get("description"), (method, path)


async def test_every_documented_error_is_the_one_error_body(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    checked = 0
    for _, path, operation in operations(document):
        for status, response in operation["responses"].items():
            if int(status) < 400:
                continue
            expected = HEALTH_REPORTS.get((path, status)) or (
                VALIDATION_ERROR_REF if status == "422" else ERROR_BODY_REF
            )
            assert response["content"]["application/json"]["schema"] == {"$ref": expected}, (path, status)
            checked += 1
    assert checked > 100


async def test_the_error_schemas_say_detail_code_and_a_422s_errors(client: httpx.AsyncClient) -> None:
    schemas = (await client.get("/openapi.json")).json()["components"]["schemas"]

    assert set(schemas["ErrorBody"]["required"]) == {"detail", "code"}
    assert schemas["ErrorBody"]["properties"]["code"]["pattern"] == "^[a-z][a-z0-9_]*$"
    validation = schemas["HTTPValidationError"]
    assert set(validation["required"]) == {"detail", "code", "errors"}
    assert validation["properties"]["code"]["const"] == "validation_failed"
    assert validation["properties"]["errors"]["items"] == {"$ref": "#/components/schemas/ValidationError"}
    # A real 422 is valid to it.
    refused = await client.post("/api/auth/login", json={"email": "not an email"})
    body_schema = {**validation, "components": {"schemas": schemas}}
    body_schema["properties"]["errors"] = {"type": "array", "items": schemas["ValidationError"]}
    assert jsonschema_rs.validator_for(body_schema).is_valid(refused.json()), refused.json()


async def test_optional_sign_in_is_shown_as_optional(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]

    assert paths["/api/jobs/{job_id}"]["get"]["security"] == [{"HTTPBearer": []}, {}]
    assert paths["/health/queues"]["get"]["security"] == [{"HTTPBearer": []}, {}]
    assert paths["/api/jobs/{job_id}"]["patch"]["security"] == [{"HTTPBearer": []}]


async def test_the_health_routes_document_their_reports(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]

    for path in ("/health", "/health/database", "/health/queues"):
        schema = paths[path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema.get("$ref", "").startswith("#/components/schemas/"), path


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.urls.append(value)
        if tag == "script" and not dict(attrs).get("src"):
            self.inline_scripts += 1


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_the_documentation_pages_load_only_assets_the_app_serves(client: httpx.AsyncClient, page: str) -> None:
    response = await client.get(page)
    assert response.status_code == 200
    assets = _Assets()
    assets.feed(response.text)

    assert assets.urls, "the page names no script or style"
    assert "/openapi.json" in response.text
    for url in assets.urls:
        assert re.match(r"/[^/]", url), url  # same origin: no CDN
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert asset.headers["content-type"].split(";")[0] in {"text/javascript", "text/css", "image/png"}, url
        assert asset.content, url


# Enumerations list their values, which are their examples; no other component may go without one.
def _lists_its_values(schema: dict[str, Any]) -> bool:
    return bool(schema.get("enum"))


def test_every_operation_and_schema_is_described_with_a_valid_example() -> None:
    """A frontend developer can work from /docs alone: every operation says what it does, every
    schema what it is, with an example the schema itself accepts (schemathesis sends them too)."""
    from backend_app.main import create_app

    document = create_app().openapi()
    schemas = document["components"]["schemas"]

    assert [
        (method, path) for method, path, operation in operations(document) if not operation.get("description")
    ] == []
    assert [name for name, schema in schemas.items() if not schema.get("description")] == []
    assert [
        name for name, schema in schemas.items() if not schema.get("examples") and not _lists_its_values(schema)
    ] == []
    # FastAPI writes the document without null values (exclude_none), nulls in examples too: an
    # example gives a required nullable field a value, or this finds it missing.
    invalid = {}
    for name, schema in schemas.items():
        validator = jsonschema_rs.Draft202012Validator(
            {"$ref": f"#/components/schemas/{name}", "components": document["components"]}, validate_formats=True
        )
        for example in schema.get("examples", []):
            errors = [error.message for error in validator.iter_errors(example)]
            if errors:
                invalid[name] = errors
    assert invalid == {}

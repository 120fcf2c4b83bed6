"""Sign-in is checked before existence: an anonymous caller learns nothing about which ids
exist (and takes no row lock) on any operation that needs a signed-in user."""

from __future__ import annotations

import re

import httpx
from fastapi import FastAPI


async def test_every_sign_in_only_operation_answers_401_before_404(app: FastAPI, client: httpx.AsyncClient) -> None:
    schema = app.openapi()
    checked = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            security = operation.get("security")
            if not security or {} in security:
                continue  # open to anonymous callers
            url = re.sub(r"\{[^}]+\}", "999999", path)
            response = await client.request(method.upper(), url, json={})
            assert response.status_code == 401, f"{method.upper()} {path}: {response.status_code} {response.text}"
            checked.append(f"{method.upper()} {path}")
    assert "POST /api/users/{user_id}/follow" in checked
    assert "DELETE /api/jobs/{job_id}" in checked
    assert len(checked) > 30

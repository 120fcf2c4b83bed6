"""The ASGI app started by the documented command, as an operator runs it."""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path

from devtools.devstack import LocalStack, free_port
from tests.processes import running, wait_for_http


def test_uvicorn_serves_health_database_with_primary_and_replicas(stack: LocalStack, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "uvicorn.log"
    command = [sys.executable, "-m", "uvicorn", "backend_app.main:app", "--port", str(port)]

    with running(command, env=dict(os.environ), log=log) as process:
        response = wait_for_http(f"http://127.0.0.1:{port}/health/database", process, log)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "healthy"
    assert body["primary"]["status"] == "healthy"
    assert [replica["status"] for replica in body["replicas"]] == ["healthy", "healthy"]
    assert stack.primary is not None
    assert stack.primary.password not in response.text
    assert stack.primary.password not in log.read_text()


def test_openapi_document_is_served(stack: LocalStack, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "uvicorn.log"
    command = [sys.executable, "-m", "uvicorn", "backend_app.main:app", "--port", str(port)]

    with running(command, log=log) as process:
        response = wait_for_http(f"http://127.0.0.1:{port}/openapi.json", process, log)

    assert response.status_code == 200
    assert "/health/database" in response.json()["paths"]


async def test_startup_moves_what_lives_forever_out_of_the_collectors_sight(stack: LocalStack) -> None:
    # A tenth of a request's CPU time went to full collections walking the imported modules,
    # mappers and models (issue 15); gc.freeze at startup puts them out of its sight.
    from backend_app.main import create_app

    gc.unfreeze()
    threshold = gc.get_threshold()
    app = create_app()
    try:
        async with app.router.lifespan_context(app):
            assert gc.get_freeze_count() > 10_000
            assert gc.get_threshold()[0] >= 10_000
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)

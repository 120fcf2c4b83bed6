"""Shared fixtures: the real stack, started once per test session.

A PostgreSQL primary with a streaming replica (initdb + pg_basebackup -R) and a Redis run
from the installed server binaries on free ports in a temporary folder, and are stopped and
removed at the end. Nothing here touches a database or Redis already running on the machine.
Each test starts from empty tables and an empty Redis.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from backend_app.core.config import Settings, get_settings
from backend_app.devstack import LocalStack, run_migrations
from backend_app.main import create_app
from backend_app.models import Base


@pytest.fixture(scope="session")
def stack() -> Iterator[LocalStack]:
    root = Path(tempfile.mkdtemp(prefix="jobplatform-tests-"))
    # When the suite runs as root, PostgreSQL runs as an unprivileged account that must
    # be able to walk through this folder to reach its own.
    root.chmod(0o711)
    local_stack = LocalStack(root, replicas=1, durable=False)
    saved_environment = dict(os.environ)
    try:
        local_stack.start()
        os.environ.update(local_stack.environment())
        run_migrations(dict(os.environ))
        get_settings.cache_clear()
        yield local_stack
    finally:
        os.environ.clear()
        os.environ.update(saved_environment)
        get_settings.cache_clear()
        local_stack.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(autouse=True)
def isolated_state(stack: LocalStack) -> Iterator[None]:
    """Every test starts with all servers up, empty tables and an empty Redis."""
    yield
    assert stack.primary is not None
    assert stack.redis is not None
    stack.primary.start()
    for replica in stack.replicas:
        replica.start()
    stack.redis.start()
    tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
    stack.primary.psql(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    stack.redis.flushall()


@pytest.fixture
def settings(stack: LocalStack) -> Settings:
    # _env_file=None: a developer's api/.env must not leak into the tests.
    return Settings(_env_file=None, **{key.lower(): value for key, value in stack.environment().items()})


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http_client:
        yield http_client

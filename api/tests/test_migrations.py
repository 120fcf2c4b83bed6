"""Alembic migrations build the schema on an empty database and match the models."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from devtools.devstack import LocalStack
from tests.processes import API_DIR


@pytest.fixture
def empty_database(stack: LocalStack) -> Iterator[str]:
    assert stack.primary is not None
    stack.primary.psql("CREATE DATABASE migration_check", database="postgres")
    yield stack.primary.url("migration_check")
    stack.primary.psql("DROP DATABASE migration_check WITH (FORCE)", database="postgres")


def alembic(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alembic", "-x", f"url={url}", *args],
        cwd=API_DIR,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_upgrade_head_builds_the_schema_that_matches_the_models(empty_database: str, stack: LocalStack) -> None:
    assert stack.primary is not None
    upgraded = alembic(empty_database, "upgrade", "head")
    assert upgraded.returncode == 0, upgraded.stderr

    # `alembic check` compares the migrated database with the models and fails on any difference.
    checked = alembic(empty_database, "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr

    constraints = stack.primary.psql(
        "SELECT string_agg(conname, ',' ORDER BY conname) FROM pg_constraint WHERE conrelid = 'users'::regclass",
        database="migration_check",
    )
    assert constraints == "ck_users_role,pk_users"


def test_downgrade_base_removes_everything(empty_database: str, stack: LocalStack) -> None:
    assert stack.primary is not None
    assert alembic(empty_database, "upgrade", "head").returncode == 0

    downgraded = alembic(empty_database, "downgrade", "base")

    assert downgraded.returncode == 0, downgraded.stderr
    tables = stack.primary.psql(
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'",
        database="migration_check",
    )
    assert tables == "0"

"""docker-compose.yml cannot run here (no Docker engine); check that it parses and is wired up."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.processes import API_DIR, REPO_DIR


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((REPO_DIR / "docker-compose.yml").read_text())


def test_names_the_foundation_services(compose: dict[str, Any]) -> None:
    assert {"db", "db-replica", "redis", "api"} <= set(compose["services"])


def test_primary_is_configured_for_streaming_replication(compose: dict[str, Any]) -> None:
    command = " ".join(compose["services"]["db"]["command"])
    assert "wal_level=replica" in command
    assert "max_wal_senders=" in command
    assert "host replication" in compose["configs"]["allow-replication"]["content"]


def test_replica_is_cloned_from_the_primary_as_a_standby(compose: dict[str, Any]) -> None:
    replica = compose["services"]["db-replica"]
    script = " ".join(replica["entrypoint"])
    assert "pg_basebackup -h db" in script
    assert " -R " in script
    assert replica["depends_on"]["db"]["condition"] == "service_healthy"


def test_redis_keeps_an_append_only_file_on_a_volume(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    assert "--appendonly" in redis["command"]
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    assert any(volume.endswith(":/data") for volume in redis["volumes"])


def test_api_points_reads_at_the_replica_and_writes_at_the_primary(compose: dict[str, Any]) -> None:
    api = compose["services"]["api"]
    environment = api["environment"]
    assert "@db:5432/" in environment["DATABASE_URL"]
    assert "@db-replica:5432/" in environment["DATABASE_URL_READ"]
    assert environment["REDIS_URL"].startswith("redis://redis:")
    assert (REPO_DIR / api["build"]["dockerfile"]).exists()
    assert (API_DIR / "Dockerfile").exists()

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


@pytest.mark.parametrize(
    ("service", "slot", "volume"),
    [("db-replica", "replica1_slot", "db-replica-data"), ("db-replica-2", "replica2_slot", "db-replica-2-data")],
)
def test_replicas_are_cloned_from_the_primary_as_standbys(
    compose: dict[str, Any], service: str, slot: str, volume: str
) -> None:
    replica = compose["services"][service]
    script = " ".join(replica["entrypoint"])
    assert "pg_basebackup -h db" in script
    assert " -R " in script
    assert '-S "$$REPLICA_SLOT"' in script
    assert replica["environment"]["REPLICA_SLOT"] == slot
    assert replica["volumes"] == [f"{volume}:/var/lib/postgresql/data"]
    assert volume in compose["volumes"]
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
    replica_urls = environment["DATABASE_URL_READ"].split(",")
    assert ["@db-replica:5432/" in replica_urls[0], "@db-replica-2:5432/" in replica_urls[1]] == [True, True]
    assert environment["REDIS_URL"].startswith("redis://redis:")
    assert (REPO_DIR / api["build"]["dockerfile"]).exists()
    assert (API_DIR / "Dockerfile").exists()


def test_background_services_run_the_documented_commands(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["relay"]["command"] == ["python", "-m", "backend_app.outbox.relay"]
    assert services["celery-worker"]["command"][:6] == [
        "celery",
        "-A",
        "backend_app.core.celery_app",
        "worker",
        "--loglevel=info",
        "-Q",
    ]
    assert services["celery-beat"]["command"][3] == "beat"
    assert "rq worker-pool notifications analytics -n" in services["rq-worker"]["command"][-1]
    assert "--worker-class backend_app.core.rq_worker.BatchWorker" in services["rq-worker"]["command"][-1]
    assert "rq worker video_processing --url" in services["rq-video-worker"]["command"][-1]
    for name in ("relay", "celery-worker", "celery-beat", "rq-worker", "rq-video-worker", "flower"):
        assert services[name]["environment"]["REDIS_URL"] == "redis://redis:6379/0"


def test_procfile_runs_every_process_from_api() -> None:
    processes = dict(line.split(": ", 1) for line in (REPO_DIR / "Procfile").read_text().splitlines() if line.strip())
    assert set(processes) == {"web", "relay", "celery", "beat", "rq", "rq-video", "flower"}
    assert all(command.startswith("cd api && exec ") for command in processes.values())
    assert "celery -A backend_app.core.celery_app worker --loglevel=info -Q emails" in processes["celery"]
    assert "celery -A backend_app.core.celery_app beat --loglevel=info" in processes["beat"]
    assert "rq worker-pool notifications analytics -n" in processes["rq"]
    assert "--worker-class backend_app.core.rq_worker.BatchWorker" in processes["rq"]
    assert "rq worker video_processing --url" in processes["rq-video"]
    assert "celery -A backend_app.core.celery_app flower --port=" in processes["flower"]


def test_rq_dashboard_asks_for_a_login(compose: dict[str, Any]) -> None:
    dashboard = compose["services"]["rq-dashboard"]
    assert dashboard["environment"]["RQ_DASHBOARD_REDIS_URL"] == "redis://redis:6379/0"
    assert dashboard["environment"]["RQ_DASHBOARD_USERNAME"]
    assert dashboard["environment"]["RQ_DASHBOARD_PASSWORD"]

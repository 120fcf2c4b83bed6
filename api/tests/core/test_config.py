"""Settings: environment names, defaults, URL forms, and start-up refusal of bad values."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from backend_app.core.config import DEVELOPMENT_SECRET_KEY, Environment, Settings, mask_url

API_DIR = Path(__file__).resolve().parents[2]


def settings_from(**environment: str) -> Settings:
    return Settings(_env_file=None, **environment)


def test_defaults_match_the_documented_values(monkeypatch: pytest.MonkeyPatch) -> None:
    for field_name in Settings.model_fields:
        monkeypatch.delenv(field_name.upper(), raising=False)
    settings = Settings(_env_file=None)
    assert settings.redis_url == "redis://localhost:6379/0"
    assert settings.db_read_pool_size == 10
    assert settings.db_read_max_overflow == 10
    assert settings.db_read_pool_recycle == 300
    assert settings.db_read_connect_timeout == 5
    assert settings.environment is Environment.development
    assert settings.database_url_read == []


@pytest.mark.parametrize(
    "given",
    ["postgresql://u:p@db:5432/app", "postgresql+asyncpg://u:p@db:5432/app", "postgres://u:p@db:5432/app"],
)
def test_primary_url_is_normalised_to_asyncpg(given: str) -> None:
    assert settings_from(database_url=given).database_url == "postgresql+asyncpg://u:p@db:5432/app"


def test_several_replica_urls_are_split_on_commas_and_the_primary_is_dropped() -> None:
    settings = settings_from(
        database_url="postgresql://u:p@primary/app",
        database_url_read="postgresql://u:p@r1/app, postgresql://u:p@r2/app,postgresql://u:p@primary/app",
    )
    assert settings.database_url_read == [
        "postgresql+asyncpg://u:p@r1/app",
        "postgresql+asyncpg://u:p@r2/app",
    ]


@pytest.mark.parametrize("empty", ["", " ", ","])
def test_empty_replica_setting_means_no_replica(empty: str) -> None:
    assert settings_from(database_url_read=empty).database_url_read == []


def test_replica_equal_to_primary_means_no_replica() -> None:
    url = "postgresql://u:p@primary:5432/app"
    assert settings_from(database_url=url, database_url_read=url).database_url_read == []


def test_mask_url_hides_the_password() -> None:
    assert mask_url("postgresql+asyncpg://app:s3cret@db:5432/app") == "postgresql+asyncpg://app:***@db:5432/app"
    assert mask_url("redis://cache:6379/0?password=s3cret") == "redis://cache:6379/0?password=***"
    assert mask_url("redis://:s3cret@cache:6379/0") == "redis://:***@cache:6379/0"
    assert mask_url("postgresql://app:s3cret@db:notaport/app") == "<unparseable url>"


def run_app_import(**environment: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DATABASE_", "DB_"))}
    env.update(environment)
    return subprocess.run(
        [sys.executable, "-c", "import backend_app.main"],
        cwd=API_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("DB_POOL_SIZE", "lots", "Invalid setting DB_POOL_SIZE: Input should be a valid integer"),
        ("DATABASE_URL", "mysql://u:p@h/db", "Invalid setting DATABASE_URL: scheme 'mysql' is not supported"),
        ("DATABASE_URL_READ", "not a url", "Invalid setting DATABASE_URL_READ: is not a database URL"),
        ("REDIS_URL", "http://localhost", "Invalid setting REDIS_URL: must start with redis://"),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "localhost:4318",
            "Invalid setting OTEL_EXPORTER_OTLP_ENDPOINT: must be an http:// or https:// URL",
        ),
        (
            "ENVIRONMENT",
            "staging",
            "Invalid setting ENVIRONMENT: Input should be 'development' or 'production'",
        ),
    ],
)
def test_a_malformed_value_stops_start_up_with_one_line_naming_it(variable: str, value: str, expected: str) -> None:
    result = run_app_import(**{variable: value})

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(expected), lines[0]


@pytest.mark.parametrize("secret", ["", DEVELOPMENT_SECRET_KEY])
def test_production_refuses_a_missing_or_default_secret_key(secret: str) -> None:
    result = run_app_import(ENVIRONMENT="production", SECRET_KEY=secret)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "SECRET_KEY must be set to a private value when ENVIRONMENT=production" in result.stderr


def test_production_starts_with_a_private_secret_key() -> None:
    result = run_app_import(ENVIRONMENT="production", SECRET_KEY="a-long-private-value-from-the-vault")
    assert result.returncode == 0, result.stderr


def test_argon2_below_owasps_minimum_stops_start_up() -> None:
    result = run_app_import(ARGON2_MEMORY_KIB="8192", ARGON2_TIME_COST="2")

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "below OWASP's minimum for argon2id" in result.stderr


@pytest.mark.parametrize(("memory", "passes"), [("7168", "5"), ("19456", "2"), ("47104", "1")])
def test_argon2_at_owasps_minimum_configurations_is_accepted(memory: str, passes: str) -> None:
    settings = settings_from(ARGON2_MEMORY_KIB=memory, ARGON2_TIME_COST=passes)
    assert (settings.argon2_memory_kib, settings.argon2_time_cost) == (int(memory), int(passes))

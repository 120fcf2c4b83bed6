"""docker-compose.yml cannot run here (no Docker engine); check that it parses and is wired up."""

from __future__ import annotations

import re
import shlex
from typing import Any

import pytest
import yaml

from tests.processes import API_DIR, REPO_DIR

# Compose service that runs each Procfile process (`make dev` runs the Procfile).
PROCFILE_SERVICES = {
    "web": "api",
    "relay": "relay",
    "celery": "celery-worker",
    "beat": "celery-beat",
    "rq": "rq-worker",
    "rq-video": "rq-video-worker",
    "flower": "flower",
}
# Where a process listens or connects differs between a laptop and compose; only the flag must match.
ADDRESS_FLAGS = {"--host", "--port", "--address", "--url"}
# Compose keeps beat's schedule file in a path of its own; the Procfile uses beat's default.
IGNORED_FLAGS = {"celery-beat": frozenset({"--schedule", "-s"})}
# Flags that never take a value, so a positional argument after one stays positional.
SWITCH_PREFIXES = ("--with-", "--without-", "--no-")
SWITCHES = {"--burst", "--reload", "--proxy-headers", "--quiet", "--verbose", "--detach"}
PROCFILE_LINE = re.compile(r"^(?P<name>[\w-]+): cd api && exec (?P<command>.+)$")

# Every service that must come back when its process dies, as a process manager would do.
LONG_RUNNING_SERVICES = {
    "db",
    "db-replica",
    "db-replica-2",
    "redis",
    "api",
    "relay",
    "celery-worker",
    "celery-beat",
    "flower",
    "rq-worker",
    "rq-video-worker",
    "rq-dashboard",
}
# Run once to completion; a restart policy would run them again forever.
ONE_SHOT_SERVICES = {"media-init"}
MEDIA_VOLUME = "media"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((REPO_DIR / "docker-compose.yml").read_text())


def procfile_commands() -> dict[str, list[str]]:
    """Each Procfile line's command (after `cd api && exec`), split as the shell splits it."""
    commands = {}
    for line in (REPO_DIR / "Procfile").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        match = PROCFILE_LINE.match(line)
        assert match, f"Procfile line is not `name: cd api && exec <command>`: {line!r}"
        commands[match["name"]] = shlex.split(match["command"])
    return commands


def compose_command(command: str | list[str]) -> list[str]:
    """The program a compose `command:` runs, as an argument list (its `sh -c` script's last step)."""
    tokens = shlex.split(command) if isinstance(command, str) else list(command)
    if tokens[:2] != ["sh", "-c"]:
        assert not any("$$" in token for token in tokens), f"no shell expands the variables in {tokens}"
        return tokens
    # Compose turns `$$` into `$` for the shell; steps before the last (migrations) prepare.
    last_step = shlex.split(tokens[2].replace("$$", "$").split("&&")[-1])
    assert last_step[0] == "exec", f"`sh -c` must exec the program so it gets the signals: {tokens[2]!r}"
    return last_step[1:]


def command_shape(
    tokens: list[str], ignored_flags: frozenset[str] = frozenset()
) -> tuple[list[str], list[tuple[str, str]]]:
    """(program, subcommand and other positional arguments; sorted (flag, value) pairs).

    Values that are environment variables compare as `<env>` (`${REDIS_URL:-...}` and
    `$REDIS_URL` are one setting) and listen/connect addresses as `<address>`.
    """
    positionals: list[str] = []
    flags: list[tuple[str, str]] = []
    index = 0
    while index < len(tokens):
        token = tokens[index]
        index += 1
        if not token.startswith("-"):
            positionals.append(token)
            continue
        flag, equals, value = token.partition("=")
        is_switch = flag in SWITCHES or flag.startswith(SWITCH_PREFIXES)
        if not equals and not is_switch and index < len(tokens) and not tokens[index].startswith("-"):
            value = tokens[index]
            index += 1
        if flag in ignored_flags:
            continue
        if flag in ADDRESS_FLAGS:
            value = "<address>"
        elif "$" in value:
            value = "<env>"
        flags.append((flag, value))
    return positionals, sorted(flags)


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


def test_every_procfile_process_has_a_compose_service(compose: dict[str, Any]) -> None:
    assert set(procfile_commands()) == set(PROCFILE_SERVICES)
    assert set(PROCFILE_SERVICES.values()) <= set(compose["services"])


@pytest.mark.parametrize(("process", "service"), sorted(PROCFILE_SERVICES.items()))
def test_compose_runs_the_procfile_command_line(compose: dict[str, Any], process: str, service: str) -> None:
    ignored = IGNORED_FLAGS.get(service, frozenset())
    procfile = command_shape(procfile_commands()[process], ignored)
    compose_side = command_shape(compose_command(compose["services"][service]["command"]), ignored)
    assert compose_side == procfile, f"compose {service} differs from Procfile {process}"


def test_command_comparison_sees_flags_and_forgives_only_addresses_and_env_spelling() -> None:
    procfile = shlex.split(
        "rq worker video_processing --url ${REDIS_URL:-redis://localhost:6379/0} --with-scheduler "
        "--worker-class backend_app.core.rq_worker.PreloadedWorker"
    )
    same = compose_command(
        [
            "sh",
            "-c",
            "exec rq worker video_processing --worker-class backend_app.core.rq_worker.PreloadedWorker "
            "--with-scheduler --url $$REDIS_URL",
        ]
    )
    without_scheduler = compose_command(
        ["rq", "worker", "video_processing", "--url", "redis://redis:6379/0", "--worker-class", "x.Worker"]
    )
    assert command_shape(procfile) == (
        ["rq", "worker", "video_processing"],
        [
            ("--url", "<address>"),
            ("--with-scheduler", ""),
            ("--worker-class", "backend_app.core.rq_worker.PreloadedWorker"),
        ],
    )
    assert command_shape(same) == command_shape(procfile)
    assert command_shape(without_scheduler) == (
        ["rq", "worker", "video_processing"],
        [("--url", "<address>"), ("--worker-class", "x.Worker")],
    )
    assert command_shape(shlex.split("rq worker-pool a -n ${RQ_WORKERS:-2}")) == (
        ["rq", "worker-pool", "a"],
        [("-n", "<env>")],
    )
    assert command_shape(shlex.split("rq worker-pool a -n 4")) == (["rq", "worker-pool", "a"], [("-n", "4")])
    with pytest.raises(AssertionError, match="no shell expands"):
        compose_command(["rq", "worker", "--url", "$$REDIS_URL"])


def test_services_that_touch_media_share_one_volume_at_media_root(compose: dict[str, Any]) -> None:
    services = compose["services"]
    # The API writes uploads and serves /media; the video queue's jobs (renditions, thumbnails) read and write.
    media_services = {"api"} | {
        name for name in PROCFILE_SERVICES.values() if "video_processing" in compose_command(services[name]["command"])
    }
    assert media_services == {"api", "rq-video-worker"}
    mounted = {
        name
        for name, service in services.items()
        if any(volume.split(":")[0] == MEDIA_VOLUME for volume in service.get("volumes", []))
    }
    assert mounted == media_services | {"media-init"}
    assert MEDIA_VOLUME in compose["volumes"]
    for name in mounted:
        media_root = services[name]["environment"]["MEDIA_ROOT"]
        assert media_root == "/app/media"
        assert f"{MEDIA_VOLUME}:{media_root}" in services[name]["volumes"], name


def test_media_volume_is_made_writable_for_the_image_user_first(compose: dict[str, Any]) -> None:
    services = compose["services"]
    image_user = re.findall(r"^USER (\S+)$", (API_DIR / "Dockerfile").read_text(), re.MULTILINE)[-1]
    init = services["media-init"]
    assert init["user"] == "root"
    assert init["command"] == ["sh", "-c", f'chown {image_user} "$$MEDIA_ROOT"']
    assert init["build"] == services["api"]["build"]
    for name in ("api", "rq-video-worker"):
        assert services[name]["depends_on"].get("media-init") == {"condition": "service_completed_successfully"}
        assert services[name]["depends_on"]["db"] == {"condition": "service_healthy"}


def test_long_running_services_restart_when_their_process_dies(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == LONG_RUNNING_SERVICES | ONE_SHOT_SERVICES
    policies = {name: services[name].get("restart") for name in sorted(LONG_RUNNING_SERVICES)}
    assert {name: policy for name, policy in policies.items() if policy not in ("unless-stopped", "always")} == {}
    assert {name: services[name].get("restart", "no") for name in ONE_SHOT_SERVICES} == {"media-init": "no"}

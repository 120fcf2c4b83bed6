"""`python -m devtools.devstack run`, the machinery behind `make dev`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import API_DIR

CHECK_ENVIRONMENT = (
    "import os; print('DB', os.environ['DATABASE_URL'].split('@')[1]);"
    " print('READ', len(os.environ['DATABASE_URL_READ'].split(',')));"
    " print('REDIS', os.environ['REDIS_URL'])"
)


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Not pytest's tmp_path: under root its parents are closed to the PostgreSQL account.
    root = Path(tempfile.mkdtemp(prefix="devstack-test-"))
    root.chmod(0o711)
    yield root / "devdata"
    shutil.rmtree(root, ignore_errors=True)


def run_devstack(data_dir: Path, *command: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DATABASE_URL_READ", "REDIS_URL"}}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "devtools.devstack",
            "run",
            "--data-dir",
            str(data_dir),
            "--any-ports",
            "--",
            *command,
        ],
        cwd=API_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_run_starts_servers_migrates_runs_the_command_and_reuses_data(data_dir: Path) -> None:
    first = run_devstack(data_dir, sys.executable, "-m", "alembic", "current")
    assert first.returncode == 0, first.stderr
    assert "(head)" in first.stdout
    assert "stopping local servers" in first.stderr

    second = run_devstack(data_dir, sys.executable, "-c", CHECK_ENVIRONMENT)
    assert second.returncode == 0, second.stderr
    assert "READ 2" in second.stdout  # make dev runs two replicas
    assert "REDIS redis://127.0.0.1:" in second.stdout
    # The second run reused the data folder: no new cluster was made.
    assert "initdb" not in second.stderr
    assert (data_dir / "postgres" / "replica1" / "standby.signal").exists()
    assert (data_dir / "postgres" / "replica2" / "standby.signal").exists()

    # `env` prints what a process started by hand needs to join the same servers.
    exports = subprocess.run(
        [sys.executable, "-m", "devtools.devstack", "env", "--data-dir", str(data_dir)],
        cwd=API_DIR,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    primary = second.stdout.split("DB ", 1)[1].split()[0]
    redis_url = second.stdout.split("REDIS ", 1)[1].split()[0]
    assert "export DATABASE_URL=postgresql://postgres:" in exports
    assert f"@{primary}" in exports.splitlines()[0]
    assert f"export REDIS_URL={redis_url}" in exports


def test_run_exits_with_the_command_status(data_dir: Path) -> None:
    result = run_devstack(data_dir, sys.executable, "-c", "raise SystemExit(3)")
    assert result.returncode == 3


# Kills the Redis that devstack started (as a crash would), then waits for it to answer again.
KILL_REDIS_AND_WAIT = """
import os, signal, socket, sys, time
port = int(os.environ['REDIS_URL'].rsplit(':', 1)[1].split('/')[0])
pid = int(open(sys.argv[1]).read())
os.kill(pid, signal.SIGKILL)
deadline = time.monotonic() + 30
time.sleep(0.5)
while time.monotonic() < deadline:
    try:
        with socket.create_connection(('127.0.0.1', port), timeout=1) as sock:
            sock.sendall(b'PING\\r\\n')
            if sock.recv(16).startswith(b'+PONG'):
                print('REDIS BACK')
                break
    except OSError:
        pass
    time.sleep(0.2)
"""


def test_run_starts_a_server_again_when_it_dies(data_dir: Path) -> None:
    result = run_devstack(data_dir, sys.executable, "-c", KILL_REDIS_AND_WAIT, str(data_dir / "redis" / "redis.pid"))

    assert result.returncode == 0, result.stderr
    assert "REDIS BACK" in result.stdout, result.stderr
    assert "stopped; starting it again" in result.stderr

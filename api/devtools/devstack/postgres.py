"""One local PostgreSQL server (a primary or a streaming replica) from the installed binaries."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from devtools.devstack.common import DEFAULT_DATABASE, FAST_UNSAFE_SETTINGS, SUPERUSER, StackError, unprivileged_account

POSTGRES_TOOLS = ("initdb", "pg_ctl", "pg_basebackup", "postgres", "psql")


def find_postgres_bin_dir() -> Path:
    """The folder holding initdb, pg_ctl, pg_basebackup, postgres and psql of one version."""
    candidates: list[Path] = []
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(os.path.realpath(on_path)).parent)
    versioned = glob.glob("/usr/lib/postgresql/*/bin") + glob.glob("/usr/pgsql-*/bin")
    candidates += sorted((Path(p) for p in versioned), key=lambda p: _version_key(p), reverse=True)
    pg_config = shutil.which("pg_config")
    if pg_config:
        result = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if result.returncode == 0:
            candidates.append(Path(result.stdout.strip()))
    for candidate in candidates:
        if all((candidate / tool).exists() for tool in POSTGRES_TOOLS):
            return candidate
    raise StackError(
        "PostgreSQL server binaries not found (need initdb, pg_ctl, pg_basebackup, postgres, psql). "
        "Install them: Debian/Ubuntu `apt-get install postgresql`, Fedora `dnf install postgresql-server`, "
        "macOS `brew install postgresql@15`."
    )


def _version_key(path: Path) -> tuple[int, ...]:
    digits = "".join(ch if ch.isdigit() else " " for ch in str(path)).split()
    return tuple(int(d) for d in digits)


class PostgresServer:
    def __init__(self, name: str, data_dir: Path, port: int, bin_dir: Path, *, password: str) -> None:
        self.name = name
        self.data_dir = data_dir
        self.port = port
        self.bin_dir = bin_dir
        self.password = password
        self.log_file = data_dir.parent / f"{name}.log"
        self.account = unprivileged_account()

    @property
    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def url(self, database: str = DEFAULT_DATABASE) -> str:
        return f"postgresql://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PGPASSWORD": self.password, "PGCONNECT_TIMEOUT": "5", "LC_ALL": "C"}
        kwargs: dict[str, Any] = {}
        if self.account is not None:
            kwargs = {"user": self.account.pw_uid, "group": self.account.pw_gid, "extra_groups": []}
            env["HOME"] = str(self.data_dir.parent)
        result = subprocess.run(
            [str(self.bin_dir / tool), *args],
            cwd=self.data_dir.parent,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            **kwargs,
        )
        if check and result.returncode != 0:
            raise StackError(f"{tool} for {self.name} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    def initdb(self, *, durable: bool) -> None:
        password_file = self.data_dir.parent / f".{self.name}.pw"
        password_file.write_text(self.password)
        self._chown(password_file)
        try:
            self._run(
                "initdb",
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                f"--pwfile={password_file}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-instructions",
            )
        finally:
            password_file.unlink()
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": "''",
            "wal_level": "replica",
            "max_wal_senders": "10",
            "max_replication_slots": "10",
            "hot_standby": "on",
            "max_connections": "200",
        }
        if not durable:
            settings.update(FAST_UNSAFE_SETTINGS)
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# added by devtools.devstack\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def clone_from(self, primary: PostgresServer, *, slot: str) -> None:
        """Make this a streaming replica of `primary` (a base backup with -R and its own slot)."""
        primary.psql(
            f"SELECT pg_drop_replication_slot('{slot}') FROM pg_replication_slots WHERE slot_name = '{slot}'",
            database="postgres",
        )
        self._run(
            "pg_basebackup",
            "-h",
            "127.0.0.1",
            "-p",
            str(primary.port),
            "-U",
            SUPERUSER,
            "-D",
            str(self.data_dir),
            "-R",
            "-X",
            "stream",
            "-C",
            "-S",
            slot,
            "--checkpoint=fast",
        )

    def is_running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.data_dir), "status", check=False).returncode == 0

    def start(self) -> None:
        if self.is_running():
            return
        self._run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-o",
            f"-p {self.port}",
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        if self.is_running():
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "-t", "60", "stop")

    def psql(self, sql: str, *, database: str = DEFAULT_DATABASE) -> str:
        result = self._run(
            "psql",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            SUPERUSER,
            "-d",
            database,
            "-v",
            "ON_ERROR_STOP=1",
            "-X",
            "-A",
            "-t",
            "-c",
            sql,
        )
        return result.stdout.strip()

    def _chown(self, path: Path) -> None:
        if self.account is not None:
            os.chown(path, self.account.pw_uid, self.account.pw_gid)

"""A local PostgreSQL primary with streaming replicas, and a Redis, from the installed binaries.

`make dev` keeps their data under `.devdata/` and reuses it on the next run; the test suite
and the benchmarks start them in temporary folders on free ports and remove them after.
Servers already running on the machine are never touched: every server here has its own
port and data folder, PostgreSQL listens on 127.0.0.1 only and opens no Unix socket.

PostgreSQL refuses to run as root, so when this runs as root the PostgreSQL commands run
as an unprivileged account (`postgres` if it exists, else `nobody`).

    python -m backend_app.devstack run --data-dir ../.devdata -- honcho start -f ../Procfile

starts whatever DATABASE_URL / REDIS_URL do not already point at, runs the migrations,
runs the command with those variables set, and stops the servers when it exits.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import pwd
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

API_DIR = Path(__file__).resolve().parent.parent
POSTGRES_TOOLS = ("initdb", "pg_ctl", "pg_basebackup", "postgres", "psql")
DEFAULT_DATABASE = "jobplatform"
SUPERUSER = "postgres"

# Throughput over durability for throwaway test clusters; `make dev` keeps the defaults.
FAST_UNSAFE_SETTINGS = {"fsync": "off", "full_page_writes": "off"}


class StackError(RuntimeError):
    """A local server could not be set up; the message says what to do."""


def free_port() -> int:
    """A free TCP port below the kernel's ephemeral range.

    Ports the kernel hands out (bind to port 0) are also used for outgoing connections, so
    a replica's connection to its primary could take the port reserved for the next server.
    """
    try:
        ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768
    for _ in range(200):
        port = secrets.randbelow(ephemeral_low - 20000) + 20000
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise StackError("no free TCP port found between 20000 and the ephemeral range")


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


def find_redis_server() -> Path:
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if not found:
        raise StackError(
            "redis-server not found. Install it: Debian/Ubuntu `apt-get install redis-server`, "
            "Fedora `dnf install redis`, macOS `brew install redis`."
        )
    return Path(found)


def unprivileged_account() -> pwd.struct_passwd | None:
    """The account PostgreSQL runs as when we are root; None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise StackError("running as root and neither a 'postgres' nor a 'nobody' account exists")


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
            conf.write("\n# added by backend_app.devstack\n")
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


class RedisServer:
    def __init__(self, data_dir: Path, port: int, *, durable: bool) -> None:
        self.data_dir = data_dir
        self.port = port
        self.durable = durable
        self.pid_file = data_dir / "redis.pid"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def _pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    def is_running(self) -> bool:
        return self._pid() is not None and self.ping()

    def start(self) -> None:
        if self.is_running():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        persistence = ["--appendonly", "yes"] if self.durable else ["--appendonly", "no"]
        self._process = subprocess.Popen(
            [
                str(find_redis_server()),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.data_dir),
                "--pidfile",
                str(self.pid_file),
                "--save",
                "",
                "--daemonize",
                "no",
                "--logfile",
                str(self.data_dir / "redis.log"),
                *persistence,
            ],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while not (self.ping() and self._pid()):
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise StackError(f"redis-server did not start; see {self.data_dir / 'redis.log'}")
            time.sleep(0.05)

    def stop(self) -> None:
        pid = self._pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while self._pid() is not None and time.monotonic() < deadline:
            if self._process is not None:
                self._process.poll()
            time.sleep(0.05)
        if self._process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=5)

    def flushall(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(b"FLUSHALL\r\n")
            if not sock.recv(64).startswith(b"+OK"):
                raise StackError("redis FLUSHALL failed")


class LocalStack:
    """A PostgreSQL primary, `replicas` streaming replicas of it, and a Redis under `root`."""

    def __init__(
        self,
        root: Path,
        *,
        replicas: int = 1,
        durable: bool = True,
        postgres: bool = True,
        redis: bool = True,
        ports: Sequence[int] | None = None,
        database: str = DEFAULT_DATABASE,
    ) -> None:
        self.root = root.resolve()
        self.durable = durable
        self.database = database
        ports = self._assign_ports(ports, wanted=2 + replicas)
        self.postgres_dir = self.root / "postgres"
        self.primary: PostgresServer | None = None
        self.replicas: list[PostgresServer] = []
        if postgres:
            bin_dir = find_postgres_bin_dir()
            password = self._superuser_password()
            self.primary = PostgresServer(
                "primary", self.postgres_dir / "primary", ports[0], bin_dir, password=password
            )
            self.replicas = [
                PostgresServer(f"replica{n}", self.postgres_dir / f"replica{n}", ports[n], bin_dir, password=password)
                for n in range(1, replicas + 1)
            ]
        self.redis = RedisServer(self.root / "redis", ports[-1], durable=durable) if redis else None

    def _assign_ports(self, requested: Sequence[int] | None, *, wanted: int) -> list[int]:
        # A reused data folder keeps its ports: each replica's primary_conninfo names the primary's.
        ports_file = self.root / "ports.json"
        if ports_file.exists():
            saved = json.loads(ports_file.read_text())
            if len(saved) >= wanted:
                return saved
        ports = list(requested) if requested else [free_port() for _ in range(wanted)]
        if len(ports) < wanted:
            raise StackError(f"need {wanted} ports, got {len(ports)}")
        self.root.mkdir(parents=True, exist_ok=True)
        ports_file.write_text(json.dumps(ports))
        return ports

    def _superuser_password(self) -> str:
        # Kept beside the data so a reused data folder keeps working across runs.
        password_file = self.root / "postgres-password"
        if not password_file.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            password_file.write_text(secrets.token_urlsafe(18))
            password_file.chmod(0o600)
        return password_file.read_text().strip()

    def _prepare_postgres_dir(self) -> None:
        assert self.primary is not None
        self.postgres_dir.mkdir(parents=True, exist_ok=True)
        account = self.primary.account
        if account is None:
            return
        os.chown(self.postgres_dir, account.pw_uid, account.pw_gid)
        self.postgres_dir.chmod(0o700)
        # The unprivileged account must be able to walk down to its folder.
        reachable = subprocess.run(
            ["test", "-w", str(self.postgres_dir)],
            user=account.pw_uid,
            group=account.pw_gid,
            extra_groups=[],
            check=False,
        )
        if reachable.returncode != 0:
            raise StackError(
                f"PostgreSQL runs as '{account.pw_name}' (it refuses root), and that account cannot reach "
                f"{self.postgres_dir}: a parent folder is closed to other users. Run as a normal user, "
                f"or keep the project in a folder other users can enter (e.g. under /srv or /opt)."
            )

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.primary is not None:
            self._prepare_postgres_dir()
            if not self.primary.initialised:
                self.primary.initdb(durable=self.durable)
            self.primary.start()
            exists = self.primary.psql(
                f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'", database="postgres"
            )
            if exists != "1":
                self.primary.psql(f'CREATE DATABASE "{self.database}"', database="postgres")
            for replica in self.replicas:
                if not replica.initialised:
                    replica.clone_from(self.primary, slot=f"{replica.name}_slot")
                replica.start()
        if self.redis is not None:
            self.redis.start()

    def stop(self) -> None:
        errors = []
        for server in [
            *self.replicas,
            *([self.primary] if self.primary else []),
            *([self.redis] if self.redis else []),
        ]:
            try:
                server.stop()
            except StackError as error:
                errors.append(str(error))
        if errors:
            raise StackError("; ".join(errors))

    def environment(self) -> dict[str, str]:
        env: dict[str, str] = {}
        if self.primary is not None:
            env["DATABASE_URL"] = self.primary.url(self.database)
            env["DATABASE_URL_READ"] = ",".join(r.url(self.database) for r in self.replicas)
        if self.redis is not None:
            env["REDIS_URL"] = self.redis.url
        return env

    def rebuild_replica(self, replica: PostgresServer) -> None:
        """Make `replica` a fresh streaming replica again (after a test promoted it)."""
        assert self.primary is not None
        replica.stop("immediate")
        shutil.rmtree(replica.data_dir)
        replica.clone_from(self.primary, slot=f"{replica.name}_slot")
        replica.start()

    def wait_for_replicas(self, timeout: float = 30) -> None:
        """Block until every running replica has replayed the primary's current WAL position."""
        assert self.primary is not None
        target = self.primary.psql("SELECT pg_current_wal_insert_lsn()")
        deadline = time.monotonic() + timeout
        for replica in self.replicas:
            while replica.psql(f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn") != "t":
                if time.monotonic() > deadline:
                    raise StackError(f"{replica.name} did not replay up to {target} within {timeout}s")
                time.sleep(0.02)


def run_migrations(env: dict[str, str]) -> None:
    result = subprocess.run([sys.executable, "-m", "alembic", "upgrade", "head"], cwd=API_DIR, env=env, check=False)
    if result.returncode != 0:
        raise StackError("alembic upgrade head failed (see above)")


# How often `run` checks that the servers it started are still up.
WATCH_INTERVAL_SECONDS = 2.0


def _restart_stopped_servers(stack: LocalStack) -> None:
    """Start again a server that died under `make dev` (an OOM kill, a crash, a stray kill),
    as a process manager would: the app's processes reconnect on their own."""
    servers: list[PostgresServer | RedisServer] = [
        *([stack.primary] if stack.primary else []),
        *stack.replicas,
        *([stack.redis] if stack.redis else []),
    ]
    for server in servers:
        if server.is_running():
            continue
        name = "Redis" if isinstance(server, RedisServer) else f"PostgreSQL {server.name}"
        _say(f"{name} on port {server.port} stopped; starting it again")
        try:
            server.start()
        except StackError as error:
            _say(f"{name} could not be started again: {error}")


def _run_command(command: Sequence[str], env: dict[str, str], stack: LocalStack | None = None) -> int:
    child = subprocess.Popen(list(command), env=env)

    def forward(signum: int, _frame: object) -> None:
        # Ctrl-C reaches the child from the terminal itself; a TERM sent to us is passed on.
        if signum in (signal.SIGTERM, signal.SIGHUP):
            child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGHUP, forward)
    while True:
        try:
            return child.wait(timeout=WATCH_INTERVAL_SECONDS)
        except subprocess.TimeoutExpired:
            if stack is not None:
                _restart_stopped_servers(stack)


def _say(message: str) -> None:
    # A closed terminal or pipe must not stop us before the servers are stopped.
    with contextlib.suppress(OSError):
        print(f"devstack: {message}", file=sys.stderr, flush=True)


def _print_environment(data_dir: Path) -> int:
    """What a process started by hand needs to join `make dev`'s servers. Reads what
    `make dev` saved and changes nothing (no ports picked, no password made)."""
    ports_file, password_file = data_dir / "ports.json", data_dir / "postgres-password"
    if not (ports_file.exists() and password_file.exists()):
        _say(f"no local stack under {data_dir}: run `make dev` first")
        return 1
    *postgres_ports, redis_port = json.loads(ports_file.read_text())
    password = password_file.read_text().strip()
    urls = [f"postgresql://{SUPERUSER}:{password}@127.0.0.1:{port}/{DEFAULT_DATABASE}" for port in postgres_ports]
    environment = {
        "DATABASE_URL": urls[0],
        "DATABASE_URL_READ": ",".join(urls[1:]),
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
    }
    for name, value in environment.items():
        print(f"export {name}={shlex.quote(value)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backend_app.devstack", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    run = sub.add_parser("run", help="start the local servers, migrate, run COMMAND, stop the servers")
    run.add_argument("--data-dir", type=Path, default=API_DIR.parent / ".devdata")
    run.add_argument("--replicas", type=int, default=2)
    run.add_argument("--primary-port", type=int, default=25432, help="replicas take the next ports")
    run.add_argument("--redis-port", type=int, default=26379)
    run.add_argument("--any-ports", action="store_true", help="pick free ports instead of the fixed ones")
    run.add_argument("command", nargs=argparse.REMAINDER)
    show = sub.add_parser("env", help="print `export` lines for the servers `make dev` runs (to eval in a shell)")
    show.add_argument("--data-dir", type=Path, default=API_DIR.parent / ".devdata")
    args = parser.parse_args(argv)
    if args.action == "env":
        return _print_environment(args.data_dir)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")

    env = dict(os.environ)
    want_postgres = not env.get("DATABASE_URL")
    want_redis = not env.get("REDIS_URL")
    ports = (
        None
        if args.any_ports
        else [
            *(args.primary_port + n for n in range(args.replicas + 1)),
            args.redis_port,
        ]
    )
    try:
        stack = LocalStack(args.data_dir, replicas=args.replicas, postgres=want_postgres, redis=want_redis, ports=ports)
    except StackError as error:
        _say(str(error))
        return 1
    try:
        _say(f"starting local servers under {stack.root}")
        stack.start()
        env.update(stack.environment())
        for name, server in [("primary", stack.primary), *((r.name, r) for r in stack.replicas)]:
            if server is not None:
                _say(f"PostgreSQL {name} on 127.0.0.1:{server.port}")
        if stack.redis is not None:
            _say(f"Redis on {stack.redis.url}")
        run_migrations(env)
        return _run_command(command, env, stack)
    except StackError as error:
        _say(str(error))
        return 1
    finally:
        _say("stopping local servers")
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())

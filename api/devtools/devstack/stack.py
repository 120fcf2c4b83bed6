"""`LocalStack`: a PostgreSQL primary, its streaming replicas and a Redis under one folder."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from devtools.devstack.common import API_DIR, DEFAULT_DATABASE, StackError, free_port
from devtools.devstack.postgres import PostgresServer, find_postgres_bin_dir
from devtools.devstack.redis import RedisServer


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

"""A local PostgreSQL primary with streaming replicas, and a Redis, from the installed binaries.

`make dev` keeps their data under `.devdata/` and reuses it on the next run; the test suite
and the benchmarks start them in temporary folders on free ports and remove them after.
Servers already running on the machine are never touched: every server here has its own
port and data folder, PostgreSQL listens on 127.0.0.1 only and opens no Unix socket.

PostgreSQL refuses to run as root, so when this runs as root the PostgreSQL commands run
as an unprivileged account (`postgres` if it exists, else `nobody`).

    cd api && python -m devtools.devstack run --data-dir ../.devdata -- honcho start -f ../Procfile

starts whatever DATABASE_URL / REDIS_URL do not already point at, runs the migrations,
runs the command with those variables set, restarts a server that dies meanwhile, and stops
the servers when it exits. `python -m devtools.devstack env` prints the `export` lines that
join the servers `make dev` runs.

The parts: `common` (errors, ports, the account PostgreSQL runs as), `postgres` and `redis`
(one server each), `stack` (`LocalStack`, the set of them, and `run_migrations`), `watchdog`
(running the command and restarting dead servers) and `cli` (the `run` and `env` commands).
"""

from devtools.devstack.cli import main
from devtools.devstack.common import (
    API_DIR,
    DEFAULT_DATABASE,
    FAST_UNSAFE_SETTINGS,
    SUPERUSER,
    StackError,
    free_port,
    unprivileged_account,
)
from devtools.devstack.postgres import POSTGRES_TOOLS, PostgresServer, find_postgres_bin_dir
from devtools.devstack.redis import RedisServer, find_redis_server
from devtools.devstack.stack import LocalStack, run_migrations
from devtools.devstack.watchdog import WATCH_INTERVAL_SECONDS

__all__ = [
    "API_DIR",
    "DEFAULT_DATABASE",
    "FAST_UNSAFE_SETTINGS",
    "POSTGRES_TOOLS",
    "SUPERUSER",
    "WATCH_INTERVAL_SECONDS",
    "LocalStack",
    "PostgresServer",
    "RedisServer",
    "StackError",
    "find_postgres_bin_dir",
    "find_redis_server",
    "free_port",
    "main",
    "run_migrations",
    "unprivileged_account",
]

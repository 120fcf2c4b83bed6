"""The command line: `python -m devtools.devstack run [...] -- COMMAND` and `... env`."""

from __future__ import annotations

import argparse
import json
import os
import shlex
from collections.abc import Sequence
from pathlib import Path

from devtools.devstack.common import API_DIR, DEFAULT_DATABASE, SUPERUSER, StackError
from devtools.devstack.stack import LocalStack, run_migrations
from devtools.devstack.watchdog import run_command, say

DESCRIPTION = "A local PostgreSQL primary with streaming replicas, and a Redis, from the installed binaries."


def print_environment(data_dir: Path) -> int:
    """What a process started by hand needs to join `make dev`'s servers. Reads what
    `make dev` saved and changes nothing (no ports picked, no password made)."""
    ports_file, password_file = data_dir / "ports.json", data_dir / "postgres-password"
    if not (ports_file.exists() and password_file.exists()):
        say(f"no local stack under {data_dir}: run `make dev` first")
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
    parser = argparse.ArgumentParser(prog="python -m devtools.devstack", description=DESCRIPTION)
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
        return print_environment(args.data_dir)
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
        say(str(error))
        return 1
    try:
        say(f"starting local servers under {stack.root}")
        stack.start()
        env.update(stack.environment())
        for name, server in [("primary", stack.primary), *((r.name, r) for r in stack.replicas)]:
            if server is not None:
                say(f"PostgreSQL {name} on 127.0.0.1:{server.port}")
        if stack.redis is not None:
            say(f"Redis on {stack.redis.url}")
        run_migrations(env)
        return run_command(command, env, stack)
    except StackError as error:
        say(str(error))
        return 1
    finally:
        say("stopping local servers")
        stack.stop()

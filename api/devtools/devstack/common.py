"""What every server of the local stack shares: names, the error, ports, the account."""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import socket
from pathlib import Path

# api/: alembic.ini is here, and the repository root (with .devdata/) is its parent.
API_DIR = Path(__file__).resolve().parents[2]
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


def unprivileged_account() -> pwd.struct_passwd | None:
    """The account PostgreSQL runs as when we are root; None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise StackError("running as root and neither a 'postgres' nor a 'nobody' account exists")

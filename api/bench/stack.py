"""The servers a benchmark runs against: started fresh for one run, removed after it."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from devtools.devstack import LocalStack


@contextmanager
def bench_stack(name: str, *, replicas: int) -> Iterator[LocalStack]:
    """A PostgreSQL primary (with `replicas` streaming replicas) and a Redis on free ports in a
    temporary folder, migrated, with this process's settings pointing at them; stopped and
    deleted on the way out. Worker logs can go to `stack.root`."""
    from backend_app.core.config import get_settings
    from devtools.devstack import LocalStack, run_migrations

    root = Path(tempfile.mkdtemp(prefix=f"jobplatform-bench-{name}-"))
    root.chmod(0o711)  # the servers run as an unprivileged user when the bench runs as root
    stack = LocalStack(root, replicas=replicas, durable=True)
    try:
        stack.start()
        os.environ.update(stack.environment())
        get_settings.cache_clear()
        run_migrations(dict(os.environ))
        yield stack
    finally:
        stack.stop()
        shutil.rmtree(root, ignore_errors=True)

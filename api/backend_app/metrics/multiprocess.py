"""Where the API processes of one server share their metrics.

prometheus-client's multiprocess mode: each process writes its counters and gauges to
memory-mapped files named after its pid in `PROMETHEUS_MULTIPROC_DIR`, and a scrape answered
by any process sums them all. In production, set the variable to an empty directory per
deployment (the library asks for it to be wiped between runs). Without it the app makes a
private directory shared by the worker processes of one uvicorn server: named after the
server's pid and start time, so a restarted server never counts on from an earlier run's
files, and leftovers of servers that are gone are removed at the next start.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import tempfile
from functools import cache
from pathlib import Path

from prometheus_client import values

DIRECTORY_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
PRIVATE_DIRECTORY_PREFIX = "jobplatform-metrics-"


@cache
def metrics_directory() -> Path:
    """Turn multiprocess mode on in this process, once, before any of our metrics is made."""
    configured = os.environ.get(DIRECTORY_VARIABLE)
    if configured:
        directory = Path(configured)
        directory.mkdir(parents=True, exist_ok=True)
    else:
        directory = _private_directory()
        os.environ[DIRECTORY_VARIABLE] = str(directory)
    if values.ValueClass is values.MutexValue:
        # The library picks its value class when first imported, which in this process may
        # have happened before the variable was set (a test runner): metrics made from now on
        # go to the files.
        values.ValueClass = values.get_value_class()
    forget_dead_processes(directory)
    return directory


def forget_dead_processes(directory: Path) -> None:
    """Remove the live gauges (requests in flight, pools) of every process that is gone: a
    worker uvicorn replaced, or one killed outright.

    What prometheus-client's `mark_process_dead` does, except that a file another process
    removed first is no error: the workers of one server start, and are scraped, at the same
    moment, and each forgets the same dead processes (the library's glob-then-remove raised
    FileNotFoundError in whichever came second)."""
    for gauge_file in directory.glob("gauge_live*_*.db"):
        pid = int(gauge_file.stem.rsplit("_", 1)[1])
        if not _alive(pid):
            gauge_file.unlink(missing_ok=True)


def _private_directory() -> Path:
    # Uvicorn's --workers start the app in spawned children of one supervisor, which is
    # then the server; with one worker the server is this process.
    supervisor = multiprocessing.parent_process()
    server_pid = supervisor.pid if supervisor is not None and supervisor.pid is not None else os.getpid()
    root = Path(tempfile.gettempdir())
    for leftover in root.glob(f"{PRIVATE_DIRECTORY_PREFIX}*"):
        pid, _, started = leftover.name.removeprefix(PRIVATE_DIRECTORY_PREFIX).partition("-")
        if pid.isdigit() and _start_time(int(pid)) != started:
            shutil.rmtree(leftover, ignore_errors=True)
    directory = root / f"{PRIVATE_DIRECTORY_PREFIX}{server_pid}-{_start_time(server_pid)}"
    directory.mkdir(mode=0o700, exist_ok=True)
    # A shared temp directory: never write into one someone else prepared under our name.
    if directory.is_symlink() or directory.stat().st_uid != os.getuid():
        raise RuntimeError(f"{directory} is not this user's own directory: set {DIRECTORY_VARIABLE}")
    return directory


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux), which tells a pid's reuse
    apart; "0" where /proc cannot say, or "gone" for no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return "0" if not Path("/proc/self/stat").exists() else "gone"
    except OSError:
        return "0"
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(pid: int) -> bool:
    with contextlib.suppress(PermissionError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
    return True

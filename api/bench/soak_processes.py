"""The Procfile's processes for the soak: under supervisord (restarted when they die, like
compose's `restart:` policy), and once under honcho exactly as `make dev` runs them."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import xmlrpc.client
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

API_DIR = Path(__file__).resolve().parents[1]
REPO_DIR = API_DIR.parent
PROCFILE = REPO_DIR / "Procfile"
BIN_DIR = Path(sys.executable).parent


def procfile_commands(procfile: Path = PROCFILE) -> dict[str, str]:
    """name -> command line, read from the Procfile at run time (one source of truth)."""
    commands: dict[str, str] = {}
    for line in procfile.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = re.match(r"^([A-Za-z0-9_-]+):\s*(.+)$", line)
        if match is None:
            raise ValueError(f"unreadable Procfile line: {line!r}")
        commands[match.group(1)] = match.group(2).strip()
    return commands


def process_environment(base: dict[str, str]) -> dict[str, str]:
    """What `make dev` gives the Procfile: its variables, with the venv's tools first on PATH."""
    env = dict(base)
    env["PATH"] = f"{BIN_DIR}:{env.get('PATH', '/usr/bin:/bin')}"
    env.pop("PYTHONPATH", None)
    return env


def children_of(pid: int) -> list[int]:
    """Child process ids of `pid`, oldest first."""
    found = []
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append((int(fields[19]), int(status.parent.name)))
    return [child for _, child in sorted(found)]


def descendants_of(pid: int) -> list[int]:
    result = []
    for child in children_of(pid):
        result.append(child)
        result.extend(descendants_of(child))
    return result


def connected_to(pids: list[int], port: int) -> list[int]:
    """Those of `pids` holding an established TCP connection to 127.0.0.1:`port`."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "01" and int(fields[2].rsplit(":", 1)[1], 16) == port:
                    inodes.add(fields[9])
    found = []
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:[") and target[8:-1] in inodes:
                        found.append(pid)
                        break
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def sigkill(pids: list[int]) -> list[int]:
    killed = []
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    return killed


@dataclass
class Supervisor:
    """supervisord running one [program:x] per Procfile line, from the repository root."""

    root: Path
    env: dict[str, str]
    commands: dict[str, str] = field(default_factory=procfile_commands)
    process: subprocess.Popen[bytes] | None = None

    @property
    def conf(self) -> Path:
        return self.root / "supervisord.conf"

    @property
    def log_dir(self) -> Path:
        return self.root / "logs"

    @property
    def socket(self) -> Path:
        return self.root / "supervisor.sock"

    def log_of(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def write_conf(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        lines = [
            "[unix_http_server]",
            f"file={self.socket}",
            "[supervisord]",
            "nodaemon=true",
            f"logfile={self.log_dir / 'supervisord.log'}",
            f"pidfile={self.root / 'supervisord.pid'}",
            f"childlogdir={self.log_dir}",
            "loglevel=info",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
            "[supervisorctl]",
            f"serverurl=unix://{self.socket}",
        ]
        for name, command in self.commands.items():
            # supervisord expands %(...)s in its values; the Procfile's own % must stay literal.
            wrapped = f"bash -c {shlex.quote(command)}".replace("%", "%%")
            lines += [
                f"[program:{name}]",
                f"command={wrapped}",
                f"directory={REPO_DIR}",
                "autostart=true",
                "autorestart=true",
                "startsecs=1",
                "startretries=100000",
                "stopasgroup=true",
                "killasgroup=true",
                "stopwaitsecs=5",
                "redirect_stderr=true",
                f"stdout_logfile={self.log_of(name)}",
                "stdout_logfile_maxbytes=0",
            ]
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        self.write_conf()
        output = (self.log_dir / "supervisord.out").open("ab")
        self.process = subprocess.Popen(
            [str(BIN_DIR / "supervisord"), "-c", str(self.conf)],
            cwd=REPO_DIR,
            env=self.env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError, xmlrpc.client.Error):
                if self.rpc().supervisor.getState()["statename"] == "RUNNING":
                    return
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"supervisord did not start; see {self.log_dir}")
            time.sleep(0.2)

    def rpc(self) -> Any:
        from supervisor.xmlrpc import SupervisorTransport

        transport = SupervisorTransport(None, None, f"unix://{self.socket}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)

    def pid(self, name: str) -> int:
        """Like `supervisorctl pid NAME`: 0 when it is not running."""
        return int(self.rpc().supervisor.getProcessInfo(name)["pid"])

    def states(self) -> dict[str, str]:
        return {info["name"]: info["statename"] for info in self.rpc().supervisor.getAllProcessInfo()}

    def wait_running(self, name: str, *, not_pid: int = 0, timeout: float = 60) -> int:
        """Wait until `name` runs with a pid other than `not_pid`; returns the pid (0 on timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, xmlrpc.client.Error):
                info = self.rpc().supervisor.getProcessInfo(name)
                if info["statename"] == "RUNNING" and info["pid"] and info["pid"] != not_pid:
                    return int(info["pid"])
            time.sleep(0.2)
        return 0

    def exits(self) -> list[tuple[str, str, str]]:
        """Every exit supervisord saw (it logs `exited: NAME (REASON)`): (time, name, reason)."""
        log = self.log_dir / "supervisord.log"
        if not log.exists():
            return []
        pattern = r"^(\S+ \S+?),\d+ \S+ exited: (\S+) \(([^)]*)\)"
        return [m.groups() for m in re.finditer(pattern, log.read_text(errors="replace"), re.MULTILINE)]

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(OSError, xmlrpc.client.Error):
            self.rpc().supervisor.stopAllProcesses(True)
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


@dataclass
class HonchoCheck:
    ran: bool = False
    api_answered: bool = False
    stopped: dict[str, str] = field(default_factory=dict)  # process -> rc
    sigkilled: list[str] = field(default_factory=list)
    stop_seconds: float = 0.0
    leftover_rq_workers: list[str] = field(default_factory=list)
    error: str = ""
    log: str = ""

    @property
    def ok(self) -> bool:
        return self.ran and self.api_answered and not self.sigkilled and not self.leftover_rq_workers and not self.error

    def describe(self) -> str:
        if not self.ran:
            return f"honcho check not run: {self.error}"
        parts = [
            f"API answered /health: {'yes' if self.api_answered else 'NO'}",
            f"stopped in {self.stop_seconds:.1f}s",
            "rc " + ", ".join(f"{name}={rc}" for name, rc in sorted(self.stopped.items())),
        ]
        if self.sigkilled:
            parts.append(f"SIGKILLed after honcho's 5 s grace: {', '.join(self.sigkilled)}")
        if self.leftover_rq_workers:
            parts.append(f"RQ workers left registered in rq:workers: {len(self.leftover_rq_workers)}")
        if self.error:
            parts.append(self.error)
        return "; ".join(parts)


def honcho_check(env: dict[str, str], api_port: int, redis_url: str, log: Path) -> HonchoCheck:
    """`honcho -f Procfile start` as `make dev` runs it, then Ctrl-C (SIGINT to its process
    group, as a terminal sends it): every process must stop within honcho's grace period,
    and no RQ worker may stay registered in Redis."""
    from redis import Redis

    check = HonchoCheck(ran=True)
    with log.open("wb") as output:
        honcho = subprocess.Popen(
            [str(BIN_DIR / "honcho"), "-f", str(PROCFILE), "start"],
            cwd=REPO_DIR,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and honcho.poll() is None:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"http://127.0.0.1:{api_port}/health", timeout=2).status_code == 200:
                        check.api_answered = True
                        break
                time.sleep(0.3)
            # Let every worker get through its start-up (RQ registers itself, Celery connects).
            time.sleep(8)
            stop_started = time.monotonic()
            os.killpg(honcho.pid, signal.SIGINT)
            try:
                honcho.wait(timeout=30)
            except subprocess.TimeoutExpired:
                check.error = "honcho did not exit within 30 s of SIGINT"
                os.killpg(honcho.pid, signal.SIGKILL)
                honcho.wait(timeout=10)
            check.stop_seconds = time.monotonic() - stop_started
        finally:
            if honcho.poll() is None:
                os.killpg(honcho.pid, signal.SIGKILL)
                honcho.wait(timeout=10)
    check.log = log.read_text(errors="replace")
    for match in re.finditer(r"\| (\S+) stopped \(rc=(-?\d+)\)", check.log):
        check.stopped[match.group(1)] = match.group(2)
    check.sigkilled = sorted(
        set(re.findall(r"sending SIGKILL to (\S+)", check.log))
        | {name for name, rc in check.stopped.items() if rc == "-9"}
    )
    with contextlib.suppress(Exception):
        redis = Redis.from_url(redis_url)
        check.leftover_rq_workers = sorted(w.decode() for w in redis.smembers("rq:workers"))
    return check

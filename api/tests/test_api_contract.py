"""The live OpenAPI document, checked by schemathesis against the API as deployed (the
Procfile's `web` line): no 5xx, no response outside its documented schema, no undocumented
status, for anonymous and signed-in callers alike.

Every check runs on every operation. The few places where a check assumes what this API does
differently on purpose are in schemathesis.toml (an answer a generated request cannot avoid:
a reset token nobody issued, following yourself, a file that is no video; a cancelled task
that stays readable) and contract_hooks.py (a rule between two body fields that JSON Schema
cannot state), each with its reason and the test that covers it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from devtools.devstack import LocalStack
from tests.processes import BIN_DIR, web_server

# Per operation and caller; the run takes a few minutes on this machine.
EXAMPLES_PER_OPERATION = 25


def run_schemathesis(
    base_url: str, report: Path, *headers: str, excluded_operations: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    command = [
        str(BIN_DIR / "st"),
        "--config-file",
        str(Path(__file__).with_name("schemathesis.toml")),
        "run",
        f"{base_url}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(EXAMPLES_PER_OPERATION),
        "--seed",
        "13",
        "--workers",
        "1",
        "--request-timeout",
        "20",
        "--report",
        "junit",
        "--report-junit-path",
        str(report),
        "--generation-database",
        "none",
    ]
    for header in headers:
        command += ["--header", header]
    for operation_id in excluded_operations:
        command += ["--exclude-operation-id", operation_id]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": str(Path(__file__).with_name("contract_hooks.py"))}
    return subprocess.run(command, capture_output=True, text=True, timeout=1500, check=False, env=env)


@pytest.mark.parametrize("caller", ["anonymous", "signed in"])
def test_every_operation_keeps_its_documented_contract(
    caller: str, stack: LocalStack, tmp_path: Path, make_user: Callable[..., tuple[int, str]]
) -> None:
    headers, excluded = [], ()
    if caller == "signed in":
        _, token = make_user("fuzzer", is_admin=False)
        headers.append(f"Authorization: Bearer {token}")
        # Signing out would end the fuzzer's own session half-way, leaving the rest of the run
        # anonymous (tests/auth/test_refresh.py covers sign-out); the anonymous run still
        # checks the operation.
        excluded = ("logout",)
    server, base_url = web_server(tmp_path, env={"RATE_LIMITS_ENABLED": "true"})
    server.start()
    try:
        result = run_schemathesis(base_url, tmp_path / "junit.xml", *headers, excluded_operations=excluded)
    finally:
        server.stop()
    print(result.stdout[-20000:], file=sys.stderr)
    assert result.returncode == 0, result.stdout[-20000:]

"""`python -m backend_app.admin create-admin|revoke-admin EMAIL`, run as an operator runs it:
from api/, with the app's settings in the environment."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

from devtools.devstack import LocalStack
from tests.conftest import query
from tests.processes import API_DIR, procfile_environment


def admin_command(*arguments: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backend_app.admin", *arguments],
        cwd=API_DIR,
        env=procfile_environment(env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def is_admin(stack: LocalStack, user_id: int) -> str:
    return query(stack, f"SELECT is_admin FROM users WHERE id = {user_id}").strip()


def test_create_admin_makes_an_existing_account_admin_once(
    stack: LocalStack, make_user: Callable[..., tuple[int, str]]
) -> None:
    user_id, _ = make_user("operator")
    other_id, _ = make_user("bystander")

    first = admin_command("create-admin", "Operator@Example.com")
    second = admin_command("create-admin", "operator@example.com")

    assert (first.returncode, first.stdout.strip()) == (0, "Operator@Example.com is now an administrator.")
    assert (second.returncode, second.stdout.strip()) == (0, "operator@example.com is already an administrator.")
    assert is_admin(stack, user_id) == "t"
    assert is_admin(stack, other_id) == "f"


def test_revoke_admin_takes_the_flag_away_idempotently(
    stack: LocalStack, make_user: Callable[..., tuple[int, str]]
) -> None:
    user_id, _ = make_user("operator", is_admin=True)

    first = admin_command("revoke-admin", "operator@example.com")
    second = admin_command("revoke-admin", "operator@example.com")

    assert (first.returncode, first.stdout.strip()) == (0, "operator@example.com is no longer an administrator.")
    assert (second.returncode, second.stdout.strip()) == (0, "operator@example.com was not an administrator.")
    assert is_admin(stack, user_id) == "f"


def test_an_unknown_address_is_an_error_that_says_what_to_do(
    stack: LocalStack, make_user: Callable[..., tuple[int, str]]
) -> None:
    user_id, _ = make_user("operator")

    missing = admin_command("create-admin", "nobody@example.com")

    assert missing.returncode == 1
    assert missing.stdout == ""
    assert "No account has the address nobody@example.com" in missing.stderr
    assert "POST /api/auth/register" in missing.stderr
    assert "Traceback" not in missing.stderr
    assert is_admin(stack, user_id) == "f"


def test_usage_errors_exit_2() -> None:
    no_email = admin_command("create-admin")
    unknown = admin_command("make-everyone-admin", "x@example.com")

    assert no_email.returncode == 2
    assert "EMAIL" in no_email.stderr
    assert unknown.returncode == 2


def test_an_unreachable_database_is_a_short_message_without_the_url_or_its_password() -> None:
    url = "postgresql+asyncpg://admin:s3cret-word@127.0.0.1:1/jobs"

    failed = admin_command("create-admin", "operator@example.com", env={"DATABASE_URL": url})

    assert failed.returncode == 3, failed.stderr
    assert "Could not reach the primary database" in failed.stderr
    assert "s3cret-word" not in failed.stdout + failed.stderr
    assert "Traceback" not in failed.stderr

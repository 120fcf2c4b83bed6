"""Operator commands, run from api/ with the application's settings (DATABASE_URL, on the primary):

    python -m backend_app.admin create-admin EMAIL   make that account an administrator
    python -m backend_app.admin revoke-admin EMAIL   make it an ordinary account again

The account must exist: register it through the API first (POST /api/auth/register). Both
commands are idempotent. Exit status: 0 done (or nothing to do), 1 no account has that
address, 2 a usage error, 3 the database could not be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from backend_app.core.config import get_settings
from backend_app.db.errors import PrimaryUnavailableError
from backend_app.db.lifecycle import close_database, init_database
from backend_app.users import service

EXIT_NO_SUCH_ACCOUNT = 1
EXIT_DATABASE_UNAVAILABLE = 3


async def set_administrator(email: str, *, admin: bool) -> bool:
    """Whether the flag changed; the change is committed on the primary when this returns."""
    router = init_database(get_settings())
    try:
        async with router.write_session() as session:
            return await service.set_administrator(session=session, email=email, admin=admin)
    finally:
        await close_database()


def parser() -> argparse.ArgumentParser:
    commands = argparse.ArgumentParser(
        prog="python -m backend_app.admin",
        description="Operator commands for the job platform (run from api/, with the app's settings).",
    )
    subcommands = commands.add_subparsers(dest="command", required=True, metavar="COMMAND")
    create = subcommands.add_parser("create-admin", help="make an existing account an administrator")
    create.add_argument("email", metavar="EMAIL", help="the account's email address")
    revoke = subcommands.add_parser("revoke-admin", help="make an administrator an ordinary account again")
    revoke.add_argument("email", metavar="EMAIL", help="the account's email address")
    return commands


def main(argv: list[str] | None = None) -> int:
    arguments = parser().parse_args(argv)
    email = arguments.email.strip()
    admin = arguments.command == "create-admin"
    try:
        changed = asyncio.run(set_administrator(email, admin=admin))
    except service.NoSuchAccount:
        print(
            f"No account has the address {email}. Register it through the API first"
            " (POST /api/auth/register), then run this command again.",
            file=sys.stderr,
        )
        return EXIT_NO_SUCH_ACCOUNT
    except (PrimaryUnavailableError, OSError) as error:
        # The error's type only: its text may hold the database URL with its password.
        print(f"Could not reach the primary database ({type(error).__name__}); check DATABASE_URL.", file=sys.stderr)
        return EXIT_DATABASE_UNAVAILABLE
    if admin:
        print(f"{email} is now an administrator." if changed else f"{email} is already an administrator.")
    else:
        print(f"{email} is no longer an administrator." if changed else f"{email} was not an administrator.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

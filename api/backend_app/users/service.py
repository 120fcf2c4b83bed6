"""Profile changes, account deletion and the administrator flag."""

from __future__ import annotations

import asyncio
import logging
import shutil
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.exc import IntegrityError

from backend_app.auth.service import display_name, end_every_session
from backend_app.core import rate_limit
from backend_app.core.config import get_settings
from backend_app.core.security import verify_password
from backend_app.db.sessions import AsyncWriteSession
from backend_app.emails import tasks as email_tasks
from backend_app.outbox import service as outbox
from backend_app.tasks import repository as task_records
from backend_app.users import repository
from backend_app.users.models import User
from backend_app.users.schemas import UserUpdate
from backend_app.videos.service import media_root

logger = logging.getLogger(__name__)

# Not an argon2 hash, so no password ever verifies against it.
UNUSABLE_PASSWORD_HASH = "!account-deleted"  # noqa: S105 - a marker, not a password


class UsernameTaken(Exception):
    pass


class WrongPassword(Exception):
    pass


class NoSuchAccount(Exception):
    pass


async def update_profile(*, session: AsyncWriteSession, user_id: int, changes: UserUpdate) -> User:
    user = await repository.get(session, user_id)
    assert user is not None, "the caller was authenticated a moment ago"
    fields = changes.model_dump(exclude_unset=True, exclude_none=True)
    if "username" in fields and await repository.username_taken(session, fields["username"], except_user_id=user_id):
        raise UsernameTaken
    for name, value in fields.items():
        setattr(user, name, value)
    try:
        await session.flush()
    except IntegrityError:
        raise UsernameTaken from None
    return user


async def delete_account(*, session: AsyncWriteSession, user_id: int, password: str) -> list[Path]:
    """Delete the account when `password` is its current one, in the caller's transaction:
    its personal rows go, the row itself stays anonymised (messages and applications others
    hold refer to it), the employer's jobs close, its applications in progress are withdrawn,
    every session ends, its waiting tasks are cancelled, and a confirmation goes to the old
    address. Wrong passwords count against the account's sign-in failures, as a password
    change does. Returns the video files to remove once the transaction has committed."""
    user = await repository.get_for_update(session, user_id)
    if user is None or user.deleted_at is not None:
        raise WrongPassword
    limit = get_settings().rate_limit_login_failures_per_account
    detail = "Too many failed attempts for this account; try again later."
    await rate_limit.check(limit, "login-failures-account", user.email, detail=detail)
    if not await asyncio.to_thread(verify_password, password, user.password_hash):
        await rate_limit.hit(limit, "login-failures-account", user.email)
        raise WrongPassword

    address, name, username = user.email, display_name(user), user.username
    root = media_root(get_settings())
    video_files = [
        path
        for stored_path, media_key in await repository.video_files_of(session, user.id)
        for path in (root / stored_path, root / "videos" / media_key)
    ]
    await task_records.cancel_waiting_of_owner(session, user.id)
    await repository.delete_personal_rows(session, user.id)
    await repository.close_jobs_of(session, user.id)
    await repository.withdraw_applications_of(session, user.id)
    await end_every_session(session, user.id)  # every access and refresh token stops working
    anonymous_address = f"deleted-{user.id}@deleted.invalid"
    await repository.forget_address_in_deliveries(session, address, replacement=anonymous_address)

    user.email = anonymous_address
    user.username = f"deleted-{user.id}"
    user.first_name = "Deleted"
    user.last_name = "account"
    user.password_hash = UNUSABLE_PASSWORD_HASH
    user.is_admin = False
    user.deleted_at = datetime.now(UTC)
    await session.flush()

    # No owner: nothing cancels it, and the task API shows it to no one.
    await outbox.add(
        session,
        email_tasks.send_account_deleted_email.call(user_email=address, user_name=name, username=username),
        idempotency_key=f"account-deleted-{user.id}",
        owner_id=None,
    )
    return video_files


def remove_files(paths: list[Path]) -> None:
    """Remove deleted videos' files and folders under MEDIA_ROOT (after the deletion committed)."""
    root = media_root(get_settings())
    for path in paths:
        if not path.resolve().is_relative_to(root) or path.resolve() == root:
            logger.warning("not removing %s: outside MEDIA_ROOT", path)
            continue
        try:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        except OSError as error:
            logger.warning("could not remove %s of a deleted account: %s", path, error)


async def set_administrator(*, session: AsyncWriteSession, email: str, admin: bool) -> bool:
    """Make the account with this address an administrator (or no longer one). Returns
    whether anything changed; NoSuchAccount when no account (or a deleted one) has it."""
    user = await repository.get_by_email_for_update(session, email)
    if user is None or user.deleted_at is not None:
        raise NoSuchAccount(email)
    if user.is_admin == admin:
        return False
    user.is_admin = admin
    await session.flush()
    return True

"""SQL for accounts."""

from __future__ import annotations

from sqlalchemy import ColumnElement, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from backend_app.analytics.models import AnalyticsEvent, UserStats
from backend_app.auth.models import PasswordResetToken
from backend_app.emails.models import EmailDelivery
from backend_app.follows.models import Follow
from backend_app.jobs.models import Application, ApplicationStatus, Job
from backend_app.notifications.models import Device, Notification, NotificationPreference
from backend_app.posts.models import Comment, Post, PostLike
from backend_app.users.models import EmailVerificationToken, User
from backend_app.videos.models import Video


async def get(session: AsyncSession, user_id: int) -> User | None:
    return await session.get(User, user_id)


async def get_active(session: AsyncSession, user_id: int) -> User | None:
    """The account, unless it does not exist or was deleted (its row stays, anonymised, for
    what others hold; nobody can follow or message it)."""
    user = await session.get(User, user_id)
    return user if user is not None and user.deleted_at is None else None


async def get_for_update(session: AsyncSession, user_id: int) -> User | None:
    """The user, locked until the transaction ends (for changes that must not race)."""
    return await session.get(User, user_id, with_for_update=True)


async def get_by_email(session: AsyncSession, email: str) -> User | None:
    return await session.scalar(select(User).where(func.lower(User.email) == email.lower()))


async def get_by_email_for_update(session: AsyncSession, email: str) -> User | None:
    """The account with this address, locked until the transaction ends."""
    return await session.scalar(select(User).where(func.lower(User.email) == email.lower()).with_for_update())


def contains_pattern(text: str) -> str:
    """An ILIKE pattern matching `text` anywhere, with its own % and _ taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def search(session: AsyncSession, *, q: str | None, limit: int, offset: int) -> tuple[list[User], int]:
    condition: ColumnElement[bool] = User.deleted_at.is_(None)
    if q:
        pattern = contains_pattern(q)
        condition = condition & or_(
            User.username.ilike(pattern),
            User.first_name.ilike(pattern),
            User.last_name.ilike(pattern),
            (User.first_name + " " + User.last_name).ilike(pattern),
        )
    total = await session.scalar(select(func.count()).select_from(User).where(condition)) or 0
    users = await session.scalars(select(User).where(condition).order_by(User.id).limit(limit).offset(offset))
    return list(users.all()), total


async def username_taken(session: AsyncSession, username: str, *, except_user_id: int | None = None) -> bool:
    statement = select(User.id).where(func.lower(User.username) == username.lower())
    if except_user_id is not None:
        statement = statement.where(User.id != except_user_id)
    return await session.scalar(statement) is not None


# Account deletion (users.service.delete_account): what is only the account's own goes, what
# others hold (messages, applications to their jobs) stays with the anonymised row.


async def video_files_of(session: AsyncSession, user_id: int) -> list[tuple[str, str]]:
    """(stored_path, media_key) of each of the user's videos: the upload and its folder of
    renditions under MEDIA_ROOT."""
    rows = await session.execute(select(Video.stored_path, Video.media_key).where(Video.owner_id == user_id))
    return [(stored_path, media_key) for stored_path, media_key in rows.all()]


async def delete_personal_rows(session: AsyncSession, user_id: int) -> None:
    """Delete the rows that concern nobody but the user: devices, notification preferences
    and notifications, follows both ways, the user's posts (with everyone's likes and
    comments on them), likes and comments, reset and verification tokens, videos and the
    computed figures. The user's analytics events stay for the totals, without the user."""
    for statement in (
        delete(Device).where(Device.user_id == user_id),
        delete(NotificationPreference).where(NotificationPreference.user_id == user_id),
        delete(Notification).where(Notification.user_id == user_id),
        delete(Follow).where(or_(Follow.follower_id == user_id, Follow.followed_id == user_id)),
        delete(PostLike).where(PostLike.user_id == user_id),
        delete(Comment).where(Comment.author_id == user_id),
        delete(Post).where(Post.author_id == user_id),
        delete(PasswordResetToken).where(PasswordResetToken.user_id == user_id),
        delete(EmailVerificationToken).where(EmailVerificationToken.user_id == user_id),
        delete(Video).where(Video.owner_id == user_id),
        delete(UserStats).where(UserStats.user_id == user_id),
        update(AnalyticsEvent).where(AnalyticsEvent.user_id == user_id).values(user_id=None),
    ):
        await session.execute(statement)


async def forget_address_in_deliveries(session: AsyncSession, address: str, *, replacement: str) -> None:
    """Replace `address` in the log of emails already sent."""
    await session.execute(
        update(EmailDelivery)
        .where(func.lower(EmailDelivery.recipient) == address.lower())
        .values(recipient=replacement)
    )


async def close_jobs_of(session: AsyncSession, employer_id: int) -> None:
    """Close the employer's open postings; their applications stay with the applicants."""
    await session.execute(
        update(Job).where(Job.employer_id == employer_id, Job.closed_at.is_(None)).values(closed_at=func.now())
    )


# Stages an applicant can still withdraw from; a decided application (rejected, hired) keeps
# its outcome in the employer's records.
WITHDRAWABLE = (ApplicationStatus.submitted, ApplicationStatus.reviewed, ApplicationStatus.interview)


async def withdraw_applications_of(session: AsyncSession, applicant_id: int) -> None:
    await session.execute(
        update(Application)
        .where(Application.applicant_id == applicant_id, Application.status.in_([s.value for s in WITHDRAWABLE]))
        .values(status=ApplicationStatus.withdrawn.value, status_changed_at=func.now())
    )

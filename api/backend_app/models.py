"""Every model, imported once so Base.metadata is complete (Alembic and the tests use this)."""

from backend_app.analytics.models import AnalyticsEvent, UserStats
from backend_app.auth.models import AuthSession, PasswordResetToken, RefreshToken
from backend_app.db.base import Base
from backend_app.emails.models import EmailDelivery
from backend_app.follows.models import Follow
from backend_app.jobs.models import Application, Job
from backend_app.messages.models import Message
from backend_app.notifications.models import Device, Notification, NotificationPreference
from backend_app.outbox.models import OutboxMessage
from backend_app.posts.models import Comment, Post, PostLike
from backend_app.tasks.models import TaskRecord
from backend_app.users.models import EmailVerificationToken, User
from backend_app.videos.models import Video

__all__ = [
    "AnalyticsEvent",
    "Application",
    "AuthSession",
    "Base",
    "Comment",
    "Device",
    "EmailDelivery",
    "EmailVerificationToken",
    "Follow",
    "Job",
    "Message",
    "Notification",
    "NotificationPreference",
    "OutboxMessage",
    "PasswordResetToken",
    "Post",
    "PostLike",
    "RefreshToken",
    "TaskRecord",
    "User",
    "UserStats",
    "Video",
]

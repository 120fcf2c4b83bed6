"""Every model, imported once so Base.metadata is complete (Alembic and the tests use this)."""

from backend_app.analytics.models import AnalyticsEvent, UserStats
from backend_app.auth.models import PasswordResetToken
from backend_app.core.database import Base
from backend_app.emails.models import EmailDelivery
from backend_app.follows.models import Follow
from backend_app.jobs.models import Application, Job
from backend_app.messages.models import Message
from backend_app.notifications.models import Device, Notification, NotificationPreference
from backend_app.outbox.models import OutboxMessage
from backend_app.posts.models import Comment, Post, PostLike
from backend_app.tasks.models import TaskRecord
from backend_app.users.models import User
from backend_app.videos.models import Video

__all__ = [
    "AnalyticsEvent",
    "Application",
    "Base",
    "Comment",
    "Device",
    "EmailDelivery",
    "Follow",
    "Job",
    "Message",
    "Notification",
    "NotificationPreference",
    "OutboxMessage",
    "PasswordResetToken",
    "Post",
    "PostLike",
    "TaskRecord",
    "User",
    "UserStats",
    "Video",
]

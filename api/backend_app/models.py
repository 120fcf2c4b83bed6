"""Every model, imported once so Base.metadata is complete (Alembic and the tests use this)."""

from backend_app.core.database import Base
from backend_app.outbox.models import OutboxMessage
from backend_app.tasks.models import TaskRecord
from backend_app.users.models import User

__all__ = ["Base", "OutboxMessage", "TaskRecord", "User"]

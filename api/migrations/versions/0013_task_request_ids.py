"""task_records.request_id and outbox_messages.request_id: the request that recorded a task
travels with it to the relay and the workers, and onto their log lines

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 09:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable without a default: PostgreSQL only changes the catalog, so neither busy table
    # is rewritten or locked for long. Tasks recorded before (and outside a request) have none.
    # 128: the longest X-Request-ID the API accepts (core.logging.MAX_REQUEST_ID_LENGTH).
    op.add_column('task_records', sa.Column('request_id', sa.String(length=128), nullable=True))
    op.add_column('outbox_messages', sa.Column('request_id', sa.String(length=128), nullable=True))


def downgrade() -> None:
    op.drop_column('outbox_messages', 'request_id')
    op.drop_column('task_records', 'request_id')

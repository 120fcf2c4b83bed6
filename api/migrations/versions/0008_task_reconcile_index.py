"""index for the task reconciler

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 08:40:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        'ix_task_records_unfinished_updated',
        'task_records',
        ['updated_at'],
        unique=False,
        postgresql_where=sa.text("status IN ('queued', 'retrying', 'started')"),
    )


def downgrade() -> None:
    op.drop_index(
        'ix_task_records_unfinished_updated',
        table_name='task_records',
        postgresql_where=sa.text("status IN ('queued', 'retrying', 'started')"),
    )

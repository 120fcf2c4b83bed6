"""devices a failed push attempt reached, kept with the notification

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 08:50:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        'notifications',
        sa.Column('pushed_tokens', postgresql.ARRAY(sa.Text()), server_default='{}', nullable=False),
    )


def downgrade() -> None:
    op.drop_column('notifications', 'pushed_tokens')

"""when an email's body started towards the SMTP server

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 09:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('email_deliveries', sa.Column('handed_over_at', sa.DateTime(timezone=True), nullable=True))
    # Rows left "sending" before this column existed may have reached the server: keep them
    # as unknown outcomes (never sent twice).
    op.execute("UPDATE email_deliveries SET handed_over_at = updated_at WHERE status = 'sending'")


def downgrade() -> None:
    op.drop_column('email_deliveries', 'handed_over_at')

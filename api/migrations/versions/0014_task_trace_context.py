"""task_records.trace_context and outbox_messages.trace_context: the W3C trace context
(traceparent, tracestate) of the span that recorded a task, so the relay's publish span and
the workers' run spans join the request's trace

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05 09:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0014'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable without a default, as 0013's request_id: a catalog change only, no rewrite.
    # Tasks recorded before, or with traces off, have none.
    op.add_column('task_records', sa.Column('trace_context', postgresql.JSONB(astext_type=sa.Text()), nullable=True))
    op.add_column('outbox_messages', sa.Column('trace_context', postgresql.JSONB(astext_type=sa.Text()), nullable=True))


def downgrade() -> None:
    op.drop_column('outbox_messages', 'trace_context')
    op.drop_column('task_records', 'trace_context')

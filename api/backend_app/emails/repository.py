"""SQL for `email_deliveries`: one row per email a task sends (its id is the task id)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from backend_app.emails.models import DeliveryStatus, EmailDelivery


async def insert_sending(session: AsyncSession, *, task_id: str, recipient: str, subject: str, message_id: str) -> bool:
    """Insert the task's row as `sending`; False when the task already has one."""
    inserted = await session.scalar(
        insert(EmailDelivery)
        .values(id=task_id, recipient=recipient, subject=subject, status=DeliveryStatus.sending, message_id=message_id)
        .on_conflict_do_nothing(index_elements=[EmailDelivery.id])
        .returning(EmailDelivery.id)
    )
    return inserted is not None


@dataclass(frozen=True)
class DeliveryState:
    status: DeliveryStatus
    body_started: bool  # handed_over_at is set: the body started towards the server
    idle_seconds: float  # since the row was last touched (by the database's clock)


async def state_for_update(session: AsyncSession, task_id: str) -> DeliveryState:
    """The task's row, locked until the transaction ends (it exists: `insert_sending` found it)."""
    row = (
        await session.execute(
            select(
                EmailDelivery.status,
                EmailDelivery.handed_over_at,
                func.extract("epoch", func.now() - EmailDelivery.updated_at).label("idle"),
            )
            .where(EmailDelivery.id == task_id)
            .with_for_update()
        )
    ).one()
    return DeliveryState(row.status, row.handed_over_at is not None, float(row.idle))


async def take_over(session: AsyncSession, task_id: str) -> None:
    """Mark the row `sending` again for a new attempt, with no body handed over yet."""
    await session.execute(
        update(EmailDelivery)
        .where(EmailDelivery.id == task_id)
        .values(status=DeliveryStatus.sending, handed_over_at=None)
    )


async def note_handed_over(session: AsyncSession, task_id: str) -> None:
    await session.execute(update(EmailDelivery).where(EmailDelivery.id == task_id).values(handed_over_at=func.now()))


async def settle(session: AsyncSession, task_id: str, status: DeliveryStatus, error: str | None = None) -> None:
    await session.execute(
        update(EmailDelivery).where(EmailDelivery.id == task_id).values(status=status, last_error=error)
    )

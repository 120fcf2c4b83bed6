"""Email tasks (Celery, queue `emails`). Thin: pick the template, hand over to `deliver`.

Their Celery names predate this module and are kept: messages already queued and Flower's
history use them.
"""

from __future__ import annotations

import logging

from celery import current_task
from celery.signals import celeryd_after_setup

from backend_app.core.config import get_settings
from backend_app.emails.service import deliver
from backend_app.worker.registry import celery_task

logger = logging.getLogger(__name__)


@celeryd_after_setup.connect
def _say_where_email_goes(sender: str, **_: object) -> None:
    settings = get_settings()
    if settings.smtp_host:
        logger.info("worker %s sends email through %s:%s", sender, settings.smtp_host, settings.smtp_port)
    else:
        logger.warning("worker %s: SMTP_HOST is empty, so emails are written to this log and NOT sent", sender)


def _task_id() -> str:
    """The running Celery task's id: the email's idempotency key (Message-ID, delivery row)."""
    return (current_task.request.id if current_task else None) or "direct"


@celery_task(name="backend_app.core.celery_tasks.send_welcome_email")
def send_welcome_email(user_email: str, user_name: str, username: str) -> dict[str, object]:
    return deliver(
        task_id=_task_id(),
        to_email=user_email,
        to_name=user_name,
        template="welcome",
        context={"user_name": user_name, "username": username},
    )


@celery_task(name="backend_app.core.celery_tasks.send_job_application_email")
def send_job_application_email(
    employer_email: str,
    employer_name: str,
    job_title: str,
    applicant_name: str,
    applicant_email: str,
    job_id: int,
) -> dict[str, object]:
    return deliver(
        task_id=_task_id(),
        to_email=employer_email,
        to_name=employer_name,
        template="job_application",
        context={
            "employer_name": employer_name,
            "job_title": job_title,
            "applicant_name": applicant_name,
            "applicant_email": applicant_email,
            "job_id": job_id,
        },
    )


@celery_task(name="backend_app.core.celery_tasks.send_password_reset_email", redacted_kwargs=("reset_token",))
def send_password_reset_email(user_email: str, user_name: str, reset_token: str) -> dict[str, object]:
    return deliver(
        task_id=_task_id(),
        to_email=user_email,
        to_name=user_name,
        template="password_reset",
        context={
            "user_name": user_name,
            "reset_token": reset_token,
            "valid_minutes": get_settings().password_reset_token_minutes,
        },
    )


@celery_task(name="backend_app.core.celery_tasks.send_message_notification_email")
def send_message_notification_email(
    recipient_email: str, recipient_name: str, sender_name: str, message_preview: str
) -> dict[str, object]:
    return deliver(
        task_id=_task_id(),
        to_email=recipient_email,
        to_name=recipient_name,
        template="message_notification",
        context={"recipient_name": recipient_name, "sender_name": sender_name, "message_preview": message_preview},
    )


@celery_task(name="backend_app.emails.tasks.send_verification_email", redacted_kwargs=("verification_token",))
def send_verification_email(user_email: str, user_name: str, verification_token: str) -> dict[str, object]:
    return deliver(
        task_id=_task_id(),
        to_email=user_email,
        to_name=user_name,
        template="verify_email",
        context={
            "user_name": user_name,
            "verification_token": verification_token,
            "valid_hours": get_settings().email_verification_token_minutes // 60,
        },
    )


@celery_task(name="backend_app.emails.tasks.send_account_deleted_email")
def send_account_deleted_email(user_email: str, user_name: str, username: str) -> dict[str, object]:
    """The confirmation of a deletion: the address is passed in, since the account row no
    longer holds it when this runs."""
    return deliver(
        task_id=_task_id(),
        to_email=user_email,
        to_name=user_name,
        template="account_deleted",
        context={"user_name": user_name, "username": username},
    )


# What the applicant reads for each stage an application can be moved to.
APPLICATION_STATUS_TEXT = {
    "submitted": ("Submitted", "Your application for {job} is with the employer."),
    "reviewed": ("Reviewed", "The employer has reviewed your application for {job}."),
    "interview": (
        "Interview",
        "Good news: the employer would like to interview you for {job}. Expect to hear from them.",
    ),
    "rejected": ("Not selected", "The employer has decided not to go further with your application for {job}."),
    "hired": ("Hired", "Congratulations: the employer has chosen you for {job}."),
    "withdrawn": ("Withdrawn", "You have withdrawn your application for {job}."),
}


@celery_task(name="backend_app.emails.tasks.send_application_status_email")
def send_application_status_email(
    applicant_email: str, applicant_name: str, job_title: str, application_id: int, status: str
) -> dict[str, object]:
    label, message = APPLICATION_STATUS_TEXT[status]
    return deliver(
        task_id=_task_id(),
        to_email=applicant_email,
        to_name=applicant_name,
        template="application_status",
        context={
            "applicant_name": applicant_name,
            "job_title": job_title,
            "application_id": application_id,
            "status_label": label,
            "message": message.format(job=job_title),
        },
    )

"""Email verification: the link in the sign-up email (and in any resent one) confirms the
address once, until it expires; until then posting a job is refused."""

from __future__ import annotations

from email.message import EmailMessage

import httpx

from devtools.devstack import LocalStack
from tests.auth.test_router import PASSWORD, registration
from tests.conftest import SmtpSink, query, wait_for_mail

SUBJECT = "Confirm your email address for Job Platform"
INVALID = "This verification link is invalid, expired or already used; sign in and ask for a new one."
JOB = {"title": "Welder", "description": "Steel work, full time", "location": "Oslo"}


def link_token(mail: EmailMessage) -> str:
    assert mail["Subject"] == SUBJECT
    assert mail["To"] == "Ada Lovelace <ada@example.com>"
    text = mail.get_body(("plain",)).get_content()
    token = text.split("http://localhost:8000/verify-email?token=")[1].split()[0]
    assert f"/verify-email?token={token}" in mail.get_body(("html",)).get_content()
    return token


async def sign_in(client: httpx.AsyncClient) -> dict[str, str]:
    response = await client.post("/api/auth/login", json={"email": "ada@example.com", "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def verify(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/api/auth/verify-email", json={"token": token})


async def test_the_sign_up_link_confirms_the_address_once_and_unlocks_posting_jobs(
    client: httpx.AsyncClient, mail_workers: SmtpSink, stack: LocalStack
) -> None:
    registered = await client.post("/api/auth/register", json=registration(role="employer"))
    assert registered.json()["email_verified"] is False
    [mail] = await wait_for_mail(mail_workers, "ada@example.com")
    token = link_token(mail)
    ada = await sign_in(client)
    refused = await client.post("/api/jobs", json=JOB, headers=ada)
    assert refused.status_code == 403
    assert "Confirm your email address first" in refused.json()["detail"]
    assert refused.json()["code"] == "email_not_verified"

    confirmed = await verify(client, token)

    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["email"] == "ada@example.com"
    assert confirmed.json()["email_verified"] is True
    again = await verify(client, token)
    assert again.status_code == 400
    assert again.json()["detail"] == INVALID
    assert query(stack, "SELECT email_verified_at IS NOT NULL FROM users") == "t"
    assert query(stack, "SELECT count(*) FROM email_verification_tokens WHERE used_at IS NULL") == "0"
    assert (await client.get("/api/users/me", headers=ada)).json()["email_verified"] is True
    assert (await client.post("/api/jobs", json=JOB, headers=ada)).status_code == 201
    already = await client.post("/api/auth/verify-email/resend", headers=ada)
    assert already.status_code == 409
    assert already.json()["detail"] == "This email address is already confirmed."


async def test_an_expired_or_unknown_link_confirms_nothing(
    client: httpx.AsyncClient, mail_workers: SmtpSink, stack: LocalStack
) -> None:
    await client.post("/api/auth/register", json=registration())
    [mail] = await wait_for_mail(mail_workers, "ada@example.com")
    token = link_token(mail)
    query(stack, "UPDATE email_verification_tokens SET expires_at = now() - interval '1 second'")

    expired = await verify(client, token)
    unknown = await verify(client, "x" * 43)
    empty = await client.post("/api/auth/verify-email", json={"token": ""})
    extra = await client.post("/api/auth/verify-email", json={"token": token, "admin": True})

    assert expired.status_code == unknown.status_code == 400
    assert expired.json()["detail"] == unknown.json()["detail"] == INVALID
    assert empty.status_code == extra.status_code == 422
    assert token not in extra.text
    assert query(stack, "SELECT email_verified_at IS NULL FROM users") == "t"


async def test_a_resent_link_works_and_using_any_link_uses_them_all(
    client: httpx.AsyncClient, mail_workers: SmtpSink, stack: LocalStack
) -> None:
    await client.post("/api/auth/register", json=registration())
    ada = await sign_in(client)
    assert (await client.post("/api/auth/verify-email/resend")).status_code == 401

    resent = await client.post("/api/auth/verify-email/resend", headers=ada)

    assert resent.status_code == 202, resent.text
    mails = await wait_for_mail(mail_workers, "ada@example.com", count=2)
    first, second = (link_token(m) for m in mails)
    assert first != second
    assert query(stack, "SELECT count(*) FROM task_records WHERE id LIKE 'verification-email-%'") == "1"
    # The older link still works: resending must not strand an email already on its way.
    assert (await verify(client, first)).status_code == 200
    assert (await verify(client, second)).status_code == 400
    assert (await client.get("/api/users/me", headers=ada)).json()["email_verified"] is True


async def test_resending_is_limited_per_account(client: httpx.AsyncClient, stack: LocalStack) -> None:
    await client.post("/api/auth/register", json=registration())
    ada = await sign_in(client)

    answers = [await client.post("/api/auth/verify-email/resend", headers=ada) for _ in range(4)]

    assert [a.status_code for a in answers] == [202, 202, 202, 429]
    assert int(answers[-1].headers["Retry-After"]) > 0
    assert answers[-1].json()["detail"] == "Too many verification emails for this account; try again later."
    assert query(stack, "SELECT count(*) FROM email_verification_tokens") == "4"  # sign-up + 3

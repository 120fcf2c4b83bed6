"""Registration, sign-in and password reset, with real email through Celery and SMTP."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from devtools.devstack import LocalStack
from tests.conftest import SmtpSink, wait_for_mail

PASSWORD = "correct-horse-42"


def registration(**overrides: str) -> dict[str, str]:
    return {
        "email": "ada@example.com",
        "username": "ada",
        "password": PASSWORD,
        "first_name": "Ada",
        "last_name": "Lovelace",
        "role": "job_seeker",
        **overrides,
    }


async def test_register_returns_the_user_and_the_verification_email_arrives(
    client: httpx.AsyncClient, mail_workers: SmtpSink, stack: LocalStack
) -> None:
    response = await client.post("/api/auth/register", json=registration(email="Ada@Example.com"))

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["email"] == "ada@example.com"
    assert body["username"] == "ada"
    assert "password" not in response.text
    assert "hash" not in response.text
    [mail] = await wait_for_mail(mail_workers, "ada@example.com")  # one email: it welcomes, and asks to confirm
    assert mail["Subject"] == "Confirm your email address for Job Platform"
    assert mail["To"] == "Ada Lovelace <ada@example.com>"
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    token = text.split("http://localhost:8000/verify-email?token=")[1].split()[0]
    assert f'href="http://localhost:8000/verify-email?token={token}"' in html
    # Operators follow the sign-up email by this key (the soak too).
    assert stack.primary is not None
    assert stack.primary.psql(f"SELECT count(*) FROM task_records WHERE id = 'welcome-email-{body['id']}'") == "1"
    assert token not in stack.primary.psql("SELECT string_agg(token_hash, ',') FROM email_verification_tokens")


@pytest.mark.parametrize(
    ("second", "detail"),
    [
        ({"username": "other"}, "An account with this email already exists."),
        ({"email": "other@example.com", "username": "ADA"}, "This username is taken."),
    ],
)
async def test_duplicate_email_or_username_is_409(client: httpx.AsyncClient, second: dict, detail: str) -> None:
    assert (await client.post("/api/auth/register", json=registration())).status_code == 201

    response = await client.post("/api/auth/register", json=registration(**second))

    assert response.status_code == 409
    assert response.json() == {"detail": detail, "code": "conflict"}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("password", "short1"),
        ("password", "onlyletterspassword"),
        ("password", "ada-is-my-name-1"),
        ("email", "not-an-email"),
        ("username", "a"),
        ("role", "admin"),
        ("first_name", "Ada\r\nBcc: victim@example.com"),
    ],
)
async def test_bad_registration_is_422(client: httpx.AsyncClient, field: str, value: str) -> None:
    response = await client.post("/api/auth/register", json=registration(**{field: value}))

    assert response.status_code == 422, response.text
    assert response.json()["detail"]


async def test_login_gives_a_bearer_token_that_works(client: httpx.AsyncClient) -> None:
    await client.post("/api/auth/register", json=registration())

    response = await client.post("/api/auth/login", json={"email": "ADA@example.com", "password": PASSWORD})

    assert response.status_code == 200
    token = response.json()
    assert set(token) == {"access_token", "token_type", "expires_in", "refresh_token", "refresh_expires_in"}
    assert token["token_type"] == "bearer"
    assert token["expires_in"] == 15 * 60
    assert token["refresh_expires_in"] == 30 * 24 * 3600
    me = await client.get("/api/users/me", headers={"Authorization": f"Bearer {token['access_token']}"})
    assert me.status_code == 200
    assert me.json()["username"] == "ada"


async def test_wrong_password_and_unknown_email_get_the_same_401(client: httpx.AsyncClient) -> None:
    await client.post("/api/auth/register", json=registration())

    wrong = await client.post("/api/auth/login", json={"email": "ada@example.com", "password": "wrong-pass-1"})
    unknown = await client.post("/api/auth/login", json={"email": "nobody@example.com", "password": PASSWORD})

    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json() == {"detail": "Incorrect email or password.", "code": "not_authenticated"}


async def test_repeated_failures_from_one_address_are_refused_with_429(client: httpx.AsyncClient) -> None:
    await client.post("/api/auth/register", json=registration())
    for _ in range(10):
        failed = await client.post("/api/auth/login", json={"email": "ada@example.com", "password": "guess-123"})
        assert failed.status_code == 401

    throttled = await client.post("/api/auth/login", json={"email": "ada@example.com", "password": PASSWORD})

    assert throttled.status_code == 429
    assert int(throttled.headers["Retry-After"]) > 0
    assert "Too many failed sign-ins" in throttled.json()["detail"]


async def test_password_reset_email_token_works_once(
    client: httpx.AsyncClient, mail_workers: SmtpSink, stack: LocalStack
) -> None:
    await client.post("/api/auth/register", json=registration())

    requested = await client.post("/api/auth/password-reset", json={"email": "ada@example.com"})
    unknown = await client.post("/api/auth/password-reset", json={"email": "nobody@example.com"})

    assert requested.status_code == unknown.status_code == 202
    assert requested.json() == unknown.json()
    mails = await wait_for_mail(mail_workers, "ada@example.com", count=2)  # verification + reset
    [reset_mail] = [m for m in mails if m["Subject"] == "Reset your Job Platform password"]
    link = reset_mail.get_body(("plain",)).get_content().split("reset-password?token=")[1].split()[0]
    assert stack.primary is not None
    assert link not in stack.primary.psql("SELECT string_agg(token_hash, ',') FROM password_reset_tokens")

    new_password = "brand-new-secret-9"
    confirmed = await client.post(
        "/api/auth/password-reset/confirm", json={"token": link, "new_password": new_password}
    )
    reused = await client.post(
        "/api/auth/password-reset/confirm", json={"token": link, "new_password": "another-one-77"}
    )
    login = await client.post("/api/auth/login", json={"email": "ada@example.com", "password": new_password})

    assert confirmed.status_code == 204
    assert reused.status_code == 400
    assert reused.json() == {"detail": "This reset link is invalid, expired or already used.", "code": "bad_request"}
    assert login.status_code == 200
    await asyncio.sleep(0.5)
    assert link not in stack.primary.psql("SELECT payload::text FROM task_records WHERE name LIKE '%reset%'")


async def test_unknown_or_expired_reset_token_is_400(
    client: httpx.AsyncClient, mail_workers: SmtpSink, stack: LocalStack
) -> None:
    await client.post("/api/auth/register", json=registration())
    await client.post("/api/auth/password-reset", json={"email": "ada@example.com"})
    mails = await wait_for_mail(mail_workers, "ada@example.com", count=2)
    [reset_mail] = [m for m in mails if m["Subject"] == "Reset your Job Platform password"]
    token = reset_mail.get_body(("plain",)).get_content().split("reset-password?token=")[1].split()[0]
    assert stack.primary is not None
    stack.primary.psql("UPDATE password_reset_tokens SET expires_at = now() - interval '1 minute'")

    expired = await client.post(
        "/api/auth/password-reset/confirm", json={"token": token, "new_password": "brand-new-secret-9"}
    )
    unknown = await client.post(
        "/api/auth/password-reset/confirm", json={"token": "x" * 43, "new_password": "brand-new-secret-9"}
    )

    assert expired.status_code == 400
    assert unknown.status_code == 400
    login = await client.post("/api/auth/login", json={"email": "ada@example.com", "password": PASSWORD})
    assert login.status_code == 200, "an expired token must not change the password"


async def test_a_lone_surrogate_in_the_body_is_a_422_not_a_500(client: httpx.AsyncClient) -> None:
    # "\ud800" is valid JSON but no character: echoing it back must not fail to encode.
    body = b'{"email": "\\ud800@x.com", "password": "x"}'

    response = await client.post("/api/auth/login", content=body, headers={"Content-Type": "application/json"})

    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "email"]

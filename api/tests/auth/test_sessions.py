"""Sessions end when they should, and guessing is throttled: per address as deployed (a
forged X-Forwarded-For changes nothing) and per account from any address."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from backend_app.core.config import get_settings
from devtools.devstack import LocalStack
from tests.auth.test_router import PASSWORD, registration
from tests.conftest import SmtpSink, wait_for_mail
from tests.processes import web_server


async def sign_in(client: httpx.AsyncClient, password: str = PASSWORD) -> dict[str, str]:
    response = await client.post("/api/auth/login", json={"email": "ada@example.com", "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def reset_links(sink: SmtpSink, count: int) -> list[str]:
    mails = await wait_for_mail(sink, "ada@example.com", count=count + 1)  # the sign-up email first
    resets = [m for m in mails if m["Subject"] == "Reset your Job Platform password"]
    return [m.get_body(("plain",)).get_content().split("reset-password?token=")[1].split()[0] for m in resets]


async def test_a_password_reset_ends_every_earlier_session_and_every_other_link(
    client: httpx.AsyncClient, mail_workers: SmtpSink
) -> None:
    await client.post("/api/auth/register", json=registration())
    stolen = await sign_in(client)
    assert (await client.get("/api/users/me", headers=stolen)).status_code == 200
    for _ in range(2):
        assert (await client.post("/api/auth/password-reset", json={"email": "ada@example.com"})).status_code == 202
    first, second = await reset_links(mail_workers, 2)

    confirmed = await client.post(
        "/api/auth/password-reset/confirm", json={"token": first, "new_password": "brand-new-secret-9"}
    )
    assert confirmed.status_code == 204

    old = await client.get("/api/users/me", headers=stolen)
    assert old.status_code == 401
    assert old.json() == {
        "detail": "This session has ended (signed out, or the password was changed or reset); sign in again.",
        "code": "session_ended",
    }
    other_link = await client.post(
        "/api/auth/password-reset/confirm", json={"token": second, "new_password": "attackers-choice-1"}
    )
    assert other_link.status_code == 400
    fresh = await sign_in(client, "brand-new-secret-9")
    assert (await client.get("/api/users/me", headers=fresh)).status_code == 200


async def test_a_password_change_needs_the_current_password_and_ends_the_other_sessions(
    client: httpx.AsyncClient,
) -> None:
    await client.post("/api/auth/register", json=registration())
    laptop, phone = await sign_in(client), await sign_in(client)

    wrong = await client.post(
        "/api/users/me/password",
        json={"current_password": "not-my-password-1", "new_password": "brand-new-secret-9"},
        headers=laptop,
    )
    assert wrong.status_code == 401
    assert (await client.get("/api/users/me", headers=phone)).status_code == 200

    changed = await client.post(
        "/api/users/me/password",
        json={"current_password": PASSWORD, "new_password": "brand-new-secret-9"},
        headers=laptop,
    )
    assert changed.status_code == 200, changed.text
    still_signed_in = {"Authorization": f"Bearer {changed.json()['access_token']}"}

    assert (await client.get("/api/users/me", headers=phone)).status_code == 401
    assert (await client.get("/api/users/me", headers=laptop)).status_code == 401
    assert (await client.get("/api/users/me", headers=still_signed_in)).status_code == 200
    old_password = await client.post("/api/auth/login", json={"email": "ada@example.com", "password": PASSWORD})
    assert old_password.status_code == 401
    await sign_in(client, "brand-new-secret-9")


async def test_reset_emails_are_limited_per_address_without_saying_so(
    client: httpx.AsyncClient, mail_workers: SmtpSink, stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RATE_LIMIT_PASSWORD_RESET_PER_EMAIL", "2/hour")
    monkeypatch.setenv("RATE_LIMIT_PASSWORD_RESET_PER_ADDRESS", "4/hour")
    get_settings.cache_clear()
    await client.post("/api/auth/register", json=registration())

    answers = [await client.post("/api/auth/password-reset", json={"email": "ada@example.com"}) for _ in range(4)]
    assert [a.status_code for a in answers] == [202] * 4
    assert len({a.text for a in answers}) == 1  # the limited ones look the same
    refused = await client.post("/api/auth/password-reset", json={"email": "someone@example.com"})
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) > 0

    assert len(await reset_links(mail_workers, 2)) == 2
    assert stack.primary is not None
    assert stack.primary.psql("SELECT count(*) FROM password_reset_tokens") == "2"
    get_settings.cache_clear()


async def test_sign_ups_are_limited_per_address(client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RATE_LIMIT_REGISTER_PER_ADDRESS", "2/hour")
    get_settings.cache_clear()
    for n in range(2):
        created = await client.post(
            "/api/auth/register", json=registration(email=f"user{n}@example.com", username=f"user{n}")
        )
        assert created.status_code == 201
    refused = await client.post("/api/auth/register", json=registration(email="user9@example.com", username="user9"))
    assert refused.status_code == 429
    assert refused.json() == {"detail": "Too many sign-ups from this address; try again later.", "code": "rate_limited"}
    get_settings.cache_clear()


def test_failed_sign_ins_are_limited_by_the_real_address_and_per_account(stack: LocalStack, tmp_path: Path) -> None:
    """As deployed (the Procfile's web line): a new X-Forwarded-For on every guess is not a
    new address, and guesses spread over many real addresses still lock the account."""
    server, base_url = web_server(
        tmp_path, env={"LOGIN_MAX_FAILURES": "3", "RATE_LIMIT_LOGIN_FAILURES_PER_ACCOUNT": "5/hour"}
    )
    server.start()

    def from_address(address: str) -> httpx.Client:
        return httpx.Client(base_url=base_url, transport=httpx.HTTPTransport(local_address=address), timeout=10)

    try:
        with from_address("127.0.0.1") as first:
            assert first.post("/api/auth/register", json=registration()).status_code == 201
            guesses = [
                first.post(
                    "/api/auth/login",
                    json={"email": "ada@example.com", "password": f"guess-{n}-x"},
                    headers={"X-Forwarded-For": f"203.0.113.{n}"},
                )
                for n in range(4)
            ]
        assert [g.status_code for g in guesses] == [401, 401, 401, 429]
        assert "from this address" in guesses[-1].json()["detail"]

        for address in ("127.0.0.2", "127.0.0.3"):
            with from_address(address) as other:
                guess = other.post("/api/auth/login", json={"email": "ada@example.com", "password": "guess-x-1"})
                assert guess.status_code == 401
        with from_address("127.0.0.4") as owner:
            locked = owner.post("/api/auth/login", json={"email": "ada@example.com", "password": PASSWORD})
            assert locked.status_code == 429
            assert "for this account" in locked.json()["detail"]
            someone_else = owner.post("/api/auth/login", json={"email": "bob@example.com", "password": "guess-x-1"})
            assert someone_else.status_code == 401
    finally:
        server.stop()

"""Signing up real accounts through the API, for tests of other domains."""

from __future__ import annotations

import asyncio

import httpx

PASSWORD = "long-enough-pass-7"


def verify_directly(user_id: int) -> None:
    """Confirm the account's email address on the primary, as following the emailed link
    does, and wait until the replicas have it (the API reads the signed-in account from one).
    A shortcut for tests of other domains; tests/auth covers the link itself."""
    from tests import conftest

    stack = conftest._stack  # the session's stack, started in pytest_sessionstart
    assert stack is not None, "the test stack did not start"
    assert stack.primary is not None
    stack.primary.psql(f"UPDATE users SET email_verified_at = now() WHERE id = {int(user_id)}")
    stack.wait_for_replicas()


def registration(username: str, role: str = "job_seeker") -> dict[str, str]:
    """The body of `POST /api/auth/register` for `username` (`<username>@example.com`)."""
    return {
        "email": f"{username}@example.com",
        "username": username,
        "password": PASSWORD,
        "first_name": username.title(),
        "last_name": "Tester",
        "role": role,
    }


async def sign_up(
    client: httpx.AsyncClient, username: str, role: str = "job_seeker", *, verified: bool = True
) -> tuple[int, dict[str, str]]:
    """Register and sign in; returns (user id, Authorization header). The address counts as
    confirmed unless `verified=False` (an unconfirmed account may not post jobs, apply or
    send messages)."""
    registered = await client.post("/api/auth/register", json=registration(username, role))
    assert registered.status_code == 201, registered.text
    user_id = registered.json()["id"]
    if verified:
        await asyncio.to_thread(verify_directly, user_id)
    login = await client.post("/api/auth/login", json={"email": f"{username}@example.com", "password": PASSWORD})
    return user_id, {"Authorization": f"Bearer {login.json()['access_token']}"}

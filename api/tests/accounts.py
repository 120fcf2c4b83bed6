"""Signing up real accounts through the API, for tests of other domains."""

from __future__ import annotations

import httpx

PASSWORD = "long-enough-pass-7"


async def sign_up(client: httpx.AsyncClient, username: str, role: str = "job_seeker") -> tuple[int, dict[str, str]]:
    """Register and sign in; returns (user id, Authorization header)."""
    registered = await client.post(
        "/api/auth/register",
        json={
            "email": f"{username}@example.com",
            "username": username,
            "password": PASSWORD,
            "first_name": username.title(),
            "last_name": "Tester",
            "role": role,
        },
    )
    assert registered.status_code == 201, registered.text
    login = await client.post("/api/auth/login", json={"email": f"{username}@example.com", "password": PASSWORD})
    return registered.json()["id"], {"Authorization": f"Bearer {login.json()['access_token']}"}

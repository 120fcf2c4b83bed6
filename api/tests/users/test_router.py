"""Account lookups (replica) and profile changes (primary)."""

from __future__ import annotations

import httpx

from devtools.devstack import LocalStack


async def register(client: httpx.AsyncClient, username: str, first: str, last: str) -> dict[str, str]:
    password = "long-enough-pass-7"
    body = {
        "email": f"{username}@example.com",
        "username": username,
        "password": password,
        "first_name": first,
        "last_name": last,
        "role": "job_seeker",
    }
    assert (await client.post("/api/auth/register", json=body)).status_code == 201
    login = await client.post("/api/auth/login", json={"email": body["email"], "password": password})
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


async def test_list_searches_names_and_paginates_without_emails(client: httpx.AsyncClient, stack: LocalStack) -> None:
    me = await register(client, "ada", "Ada", "Lovelace")
    await register(client, "grace", "Grace", "Hopper")
    await register(client, "alan", "Alan", "Turing")
    stack.wait_for_replicas()

    found = (await client.get("/api/users", params={"q": "hop"}, headers=me)).json()
    full_name = (await client.get("/api/users", params={"q": "ada love"}, headers=me)).json()
    page = (await client.get("/api/users", params={"limit": 2}, headers=me)).json()
    wildcard = (await client.get("/api/users", params={"q": "%"}, headers=me)).json()

    assert [u["username"] for u in found["items"]] == ["grace"]
    assert [u["username"] for u in full_name["items"]] == ["ada"]
    assert (page["total"], len(page["items"])) == (3, 2)
    assert wildcard["total"] == 0, "% is matched literally"
    assert "email" not in found["items"][0]
    assert (await client.get("/api/users")).status_code == 401


async def test_get_one_user_and_me(client: httpx.AsyncClient, stack: LocalStack) -> None:
    me = await register(client, "ada", "Ada", "Lovelace")
    own = (await client.get("/api/users/me", headers=me)).json()
    stack.wait_for_replicas()

    public = await client.get(f"/api/users/{own['id']}", headers=me)
    missing = await client.get("/api/users/999999", headers=me)

    assert own["email"] == "ada@example.com"
    assert public.json()["username"] == "ada"
    assert "email" not in public.json()
    assert missing.status_code == 404


async def test_patch_me_changes_names_and_refuses_a_taken_username(client: httpx.AsyncClient) -> None:
    me = await register(client, "ada", "Ada", "Lovelace")
    await register(client, "grace", "Grace", "Hopper")

    renamed = await client.patch("/api/users/me", json={"first_name": "Augusta", "username": "countess"}, headers=me)
    taken = await client.patch("/api/users/me", json={"username": "GRACE"}, headers=me)
    bad = await client.patch("/api/users/me", json={"email": "x@example.com"}, headers=me)

    assert renamed.status_code == 200
    assert (renamed.json()["first_name"], renamed.json()["username"]) == ("Augusta", "countess")
    assert taken.status_code == 409
    assert bad.status_code == 422

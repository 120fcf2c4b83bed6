"""Sign-in sessions: rotating refresh tokens (a reused one signs its session out), signing
out one session or all, the session list, and what password changes and resets end."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from backend_app.core.security import create_access_token, read_access_token
from devtools.devstack import LocalStack
from tests.auth.test_router import PASSWORD, registration
from tests.auth.test_sessions import reset_links
from tests.conftest import SmtpSink, query
from tests.videos.clips import make_clip

ENDED = "This session has ended (signed out, or the password was changed or reset); sign in again."


async def log_in(client: httpx.AsyncClient, user_agent: str = "laptop", email: str = "ada@example.com") -> dict:
    response = await client.post(
        "/api/auth/login", json={"email": email, "password": PASSWORD}, headers={"User-Agent": user_agent}
    )
    assert response.status_code == 200, response.text
    return response.json()


def bearer(pair: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {pair['access_token']}"}


async def refresh(client: httpx.AsyncClient, pair: dict) -> httpx.Response:
    return await client.post("/api/auth/refresh", json={"refresh_token": pair["refresh_token"]})


async def me(client: httpx.AsyncClient, pair: dict) -> int:
    return (await client.get("/api/users/me", headers=bearer(pair))).status_code


async def test_a_refresh_answers_a_new_pair_on_the_same_session_and_uses_the_token_up(
    client: httpx.AsyncClient, stack: LocalStack
) -> None:
    await client.post("/api/auth/register", json=registration())
    first = await log_in(client)
    session_id = read_access_token(first["access_token"]).session_id
    assert session_id is not None
    query(stack, "UPDATE auth_sessions SET last_used_at = now() - interval '1 day'")

    refreshed = await refresh(client, first)

    assert refreshed.status_code == 200, refreshed.text
    second = refreshed.json()
    assert set(second) == {"access_token", "token_type", "expires_in", "refresh_token", "refresh_expires_in"}
    assert second["refresh_token"] != first["refresh_token"]
    assert read_access_token(second["access_token"]).session_id == session_id
    assert await me(client, second) == 200
    assert query(stack, "SELECT count(*), count(rotated_at) FROM refresh_tokens") == "2|1"
    assert query(stack, "SELECT last_used_at > now() - interval '1 minute' FROM auth_sessions") == "t"
    # Stored only as hashes.
    stored = query(stack, "SELECT string_agg(token_hash, ',') FROM refresh_tokens")
    assert first["refresh_token"] not in stored
    assert second["refresh_token"] not in stored
    third = await refresh(client, second)
    assert third.status_code == 200


async def test_a_rotated_refresh_token_presented_again_signs_its_session_out(
    client: httpx.AsyncClient, stack: LocalStack
) -> None:
    await client.post("/api/auth/register", json=registration())
    stolen = await log_in(client)
    other_device = await log_in(client, "phone")
    newest = (await refresh(client, stolen)).json()

    replayed = await refresh(client, stolen)

    assert replayed.status_code == 401
    assert "already used" in replayed.json()["detail"]
    assert replayed.json()["code"] == "session_ended"
    assert replayed.headers["WWW-Authenticate"] == "Bearer"
    assert query(stack, "SELECT count(revoked_at) FROM auth_sessions") == "1"
    assert (await refresh(client, newest)).status_code == 401
    ended = await client.get("/api/users/me", headers=bearer(newest))
    assert ended.status_code == 401
    assert ended.json()["detail"] == ENDED
    assert await me(client, stolen) == 401
    assert await me(client, other_device) == 200
    assert (await refresh(client, other_device)).status_code == 200


async def test_two_refreshes_with_one_token_at_once_cannot_both_succeed(client: httpx.AsyncClient) -> None:
    await client.post("/api/auth/register", json=registration())
    pair = await log_in(client)

    answers = await asyncio.gather(*(refresh(client, pair) for _ in range(2)))

    assert sorted(a.status_code for a in answers) == [200, 401]
    [won] = [a.json() for a in answers if a.status_code == 200]
    # The second one was a reuse: the session is signed out, the winner's pair with it.
    assert (await refresh(client, won)).status_code == 401
    assert await me(client, won) == 401


async def test_unknown_expired_or_malformed_refresh_tokens_are_refused(
    client: httpx.AsyncClient, stack: LocalStack
) -> None:
    await client.post("/api/auth/register", json=registration())
    pair = await log_in(client)

    unknown = await client.post("/api/auth/refresh", json={"refresh_token": "x" * 43})
    assert unknown.status_code == 401
    assert unknown.json()["detail"] == "This refresh token is invalid, used or its session has ended; sign in again."
    malformed = await client.post("/api/auth/refresh", json={"refresh_token": pair["refresh_token"], "more": 1})
    assert malformed.status_code == 422
    assert pair["refresh_token"] not in malformed.text
    assert (await client.post("/api/auth/refresh", json={})).status_code == 422

    query(stack, "UPDATE auth_sessions SET expires_at = now() - interval '1 second'")
    expired = await refresh(client, pair)
    assert expired.status_code == 401
    assert await me(client, pair) == 401


async def test_logout_ends_this_session_and_all_sessions_ends_every_one(
    client: httpx.AsyncClient, stack: LocalStack
) -> None:
    user_id = (await client.post("/api/auth/register", json=registration())).json()["id"]
    laptop, phone, tablet = await log_in(client), await log_in(client, "phone"), await log_in(client, "tablet")
    no_session = {"access_token": create_access_token(user_id)}  # issued before sessions existed
    assert await me(client, no_session) == 200

    out = await client.post("/api/auth/logout", headers=bearer(laptop))

    assert out.status_code == 204
    assert await me(client, laptop) == 401
    assert (await refresh(client, laptop)).status_code == 401
    assert await me(client, phone) == 200
    assert await me(client, no_session) == 200
    not_a_flag = await client.post("/api/auth/logout", json={"all_sessions": "yes"}, headers=bearer(phone))
    assert not_a_flag.status_code == 422
    assert await me(client, phone) == 200
    only_this = await client.post("/api/auth/logout", json={"all_sessions": False}, headers=bearer(phone))
    assert only_this.status_code == 204
    assert await me(client, tablet) == 200

    everywhere = await client.post("/api/auth/logout", json={"all_sessions": True}, headers=bearer(tablet))

    assert everywhere.status_code == 204
    assert await me(client, tablet) == 401
    assert (await refresh(client, tablet)).status_code == 401
    assert await me(client, no_session) == 401
    assert query(stack, "SELECT count(*) FROM auth_sessions WHERE revoked_at IS NULL") == "0"
    assert (await client.post("/api/auth/logout", headers=bearer(tablet))).status_code == 401
    assert await me(client, await log_in(client)) == 200


async def test_the_session_list_shows_this_one_and_one_can_be_signed_out(
    client: httpx.AsyncClient, stack: LocalStack
) -> None:
    await client.post("/api/auth/register", json=registration())
    await client.post("/api/auth/register", json=registration(email="bob@example.com", username="bob"))
    laptop = await log_in(client, "Firefox " + "x" * 400)
    phone = await log_in(client, "Phone")
    bob = await log_in(client, "Bob's", email="bob@example.com")
    query(stack, "UPDATE auth_sessions SET last_used_at = last_used_at - interval '1 hour' WHERE user_agent = 'Phone'")

    listed = await client.get("/api/auth/sessions", headers=bearer(phone))

    assert listed.status_code == 200, listed.text
    page = listed.json()
    assert (page["total"], page["limit"], page["offset"]) == (2, 20, 0)
    first, second = page["items"]
    assert first["user_agent"] == "Firefox " + "x" * 292  # cut to 300 characters
    assert (first["current"], second["current"]) == (False, True)
    assert second["user_agent"] == "Phone"
    assert set(first) == {"id", "user_agent", "created_at", "last_used_at", "expires_at", "current"}
    assert first["id"] == read_access_token(laptop["access_token"]).session_id

    bobs_session = read_access_token(bob["access_token"]).session_id
    not_yours = await client.delete(f"/api/auth/sessions/{bobs_session}", headers=bearer(laptop))
    assert not_yours.status_code == 404
    assert not_yours.json()["detail"] == "No such session."
    assert await me(client, bob) == 200
    assert (await client.delete("/api/auth/sessions/999999", headers=bearer(laptop))).status_code == 404

    removed = await client.delete(f"/api/auth/sessions/{second['id']}", headers=bearer(laptop))

    assert removed.status_code == 204
    assert await me(client, phone) == 401
    assert (await refresh(client, phone)).status_code == 401
    remaining = (await client.get("/api/auth/sessions", headers=bearer(laptop))).json()
    assert [s["id"] for s in remaining["items"]] == [first["id"]]
    assert remaining["items"][0]["current"] is True
    assert (await client.get("/api/auth/sessions")).status_code == 401


async def test_a_password_change_keeps_this_session_with_a_new_pair_and_ends_the_others(
    client: httpx.AsyncClient,
) -> None:
    await client.post("/api/auth/register", json=registration())
    laptop, phone = await log_in(client), await log_in(client, "phone")

    changed = await client.post(
        "/api/users/me/password",
        json={"current_password": PASSWORD, "new_password": "brand-new-secret-9"},
        headers=bearer(laptop),
    )

    assert changed.status_code == 200, changed.text
    pair = changed.json()
    assert set(pair) == {"access_token", "token_type", "expires_in", "refresh_token", "refresh_expires_in"}
    session_id = read_access_token(laptop["access_token"]).session_id
    assert read_access_token(pair["access_token"]).session_id == session_id
    assert await me(client, pair) == 200
    assert await me(client, laptop) == 401
    assert await me(client, phone) == 401
    assert (await refresh(client, phone)).status_code == 401
    renewed = await refresh(client, pair)
    assert renewed.status_code == 200
    listed = (await client.get("/api/auth/sessions", headers=bearer(renewed.json()))).json()
    assert [(s["id"], s["current"]) for s in listed["items"]] == [(session_id, True)]
    # The laptop's refresh token from before the change is used up: presenting it is a reuse.
    assert (await refresh(client, laptop)).status_code == 401
    assert await me(client, renewed.json()) == 401


async def test_a_password_reset_ends_every_session_and_its_refresh_tokens(
    client: httpx.AsyncClient, mail_workers: SmtpSink, stack: LocalStack
) -> None:
    await client.post("/api/auth/register", json=registration())
    laptop, phone = await log_in(client), await log_in(client, "phone")
    await client.post("/api/auth/password-reset", json={"email": "ada@example.com"})
    [link] = await reset_links(mail_workers, 1)

    confirmed = await client.post(
        "/api/auth/password-reset/confirm", json={"token": link, "new_password": "brand-new-secret-9"}
    )

    assert confirmed.status_code == 204
    for pair in (laptop, phone):
        assert await me(client, pair) == 401
        assert (await refresh(client, pair)).status_code == 401
    assert query(stack, "SELECT count(*) FROM auth_sessions WHERE revoked_at IS NULL") == "0"


async def test_a_signed_out_session_cannot_upload(client: httpx.AsyncClient, stack: LocalStack, tmp_path: Path) -> None:
    """Uploads check the token without the database, then again once the file is in."""
    await client.post("/api/auth/register", json=registration())
    pair = await log_in(client)
    assert (await client.post("/api/auth/logout", headers=bearer(pair))).status_code == 204
    clip = make_clip(tmp_path / "a.mp4", width=320, height=240, seconds=1)

    with clip.open("rb") as file:
        response = await client.post("/api/videos/upload", files={"file": ("a.mp4", file)}, headers=bearer(pair))

    assert response.status_code == 401
    assert query(stack, "SELECT count(*) FROM videos") == "0"


async def test_a_brand_new_session_works_before_the_replicas_have_it(
    client: httpx.AsyncClient, stack: LocalStack
) -> None:
    await client.post("/api/auth/register", json=registration())
    stack.wait_for_replicas()
    for replica in stack.replicas:
        replica.psql("SELECT pg_wal_replay_pause()")  # resumed by the isolated_state fixture
    pair = await log_in(client)
    client.cookies.clear()  # no read position: the signed-in check reads a replica first

    assert [replica.psql("SELECT count(*) FROM auth_sessions") for replica in stack.replicas] == ["0", "0"]
    assert await me(client, pair) == 200

"""Direct messages: threads, conversations, read state, and the push + email they record."""

from __future__ import annotations

import httpx

from devtools.devstack import LocalStack
from tests.accounts import sign_up


async def test_send_records_push_and_email_and_threads_list_the_latest(
    client: httpx.AsyncClient, stack: LocalStack
) -> None:
    ada_id, ada = await sign_up(client, "ada")
    bob_id, bob = await sign_up(client, "bob")
    eve_id, eve = await sign_up(client, "eve")

    sent = await client.post("/api/messages", json={"recipient_id": bob_id, "body": "Hi Bob"}, headers=ada)
    await client.post("/api/messages", json={"recipient_id": ada_id, "body": "Hi Ada"}, headers=bob)
    await client.post("/api/messages", json={"recipient_id": bob_id, "body": "Are you there?"}, headers=ada)
    await client.post("/api/messages", json={"recipient_id": bob_id, "body": "Eve here"}, headers=eve)
    stack.wait_for_replicas()
    threads = (await client.get("/api/messages", headers=bob)).json()

    assert sent.status_code == 201
    assert threads["total"] == 2
    by_other = {t["other_user_id"]: t for t in threads["items"]}
    assert by_other[ada_id]["latest"]["body"] == "Are you there?"
    assert by_other[ada_id]["unread"] == 2
    assert by_other[eve_id]["unread"] == 1
    assert stack.primary is not None
    names = stack.primary.psql("SELECT string_agg(DISTINCT name, ',') FROM task_records")
    assert "send_new_message_notification_job" in names
    assert "send_message_notification_email" in names


async def test_opening_a_conversation_marks_it_read(client: httpx.AsyncClient, stack: LocalStack) -> None:
    ada_id, ada = await sign_up(client, "ada")
    bob_id, bob = await sign_up(client, "bob")
    await client.post("/api/messages", json={"recipient_id": bob_id, "body": "One"}, headers=ada)
    await client.post("/api/messages", json={"recipient_id": bob_id, "body": "Two"}, headers=ada)

    conversation = (await client.get(f"/api/messages/{ada_id}", headers=bob)).json()
    stack.wait_for_replicas()
    threads = (await client.get("/api/messages", headers=bob)).json()

    assert [m["body"] for m in conversation["items"]] == ["Two", "One"]
    assert threads["items"][0]["unread"] == 0


async def test_email_preference_off_records_no_message_email(client: httpx.AsyncClient, stack: LocalStack) -> None:
    _, ada = await sign_up(client, "ada")
    bob_id, bob = await sign_up(client, "bob")
    await client.put("/api/notifications/preferences", json={"type": "message", "email": False}, headers=bob)

    await client.post("/api/messages", json={"recipient_id": bob_id, "body": "Quiet please"}, headers=ada)

    assert stack.primary is not None
    assert stack.primary.psql("SELECT count(*) FROM task_records WHERE name LIKE '%message_notification_email'") == "0"


async def test_bad_recipients_are_refused(client: httpx.AsyncClient) -> None:
    ada_id, ada = await sign_up(client, "ada")

    to_self = await client.post("/api/messages", json={"recipient_id": ada_id, "body": "me"}, headers=ada)
    to_nobody = await client.post("/api/messages", json={"recipient_id": 999999, "body": "hello"}, headers=ada)

    assert to_self.status_code == 403
    assert to_self.json() == {"detail": "You cannot message yourself.", "code": "forbidden"}
    assert to_nobody.status_code == 404
    assert to_nobody.json() == {"detail": "No such recipient.", "code": "not_found"}


async def test_an_id_beyond_bigint_is_422_not_500(client: httpx.AsyncClient) -> None:
    _, ada = await sign_up(client, "ada")

    response = await client.get("/api/messages/99999999999999999999", headers=ada)

    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["path", "other_user_id"]


async def test_an_unconfirmed_account_cannot_send_but_can_read(client: httpx.AsyncClient, stack: LocalStack) -> None:
    from backend_app.auth.dependencies import EMAIL_NOT_VERIFIED

    ada_id, ada = await sign_up(client, "ada")
    bob_id, bob = await sign_up(client, "bob", verified=False)
    await client.post("/api/messages", json={"recipient_id": bob_id, "body": "Welcome"}, headers=ada)
    stack.wait_for_replicas()

    refused = await client.post("/api/messages", json={"recipient_id": ada_id, "body": "Hi"}, headers=bob)
    threads = await client.get("/api/messages", headers=bob)

    assert refused.status_code == 403
    assert refused.json()["detail"] == EMAIL_NOT_VERIFIED
    assert threads.status_code == 200
    assert threads.json()["total"] == 1
    assert stack.primary is not None
    assert stack.primary.psql(f"SELECT count(*) FROM messages WHERE sender_id = {bob_id}") == "0"

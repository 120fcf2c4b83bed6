"""Push devices (a token belongs to one account until that account removes it; each account
lists its own) and notification preferences (the defaults in force where none was set)."""

from __future__ import annotations

import httpx

from devtools.devstack import LocalStack
from tests.accounts import sign_up

PHONE = {"token": "ada-phone-token", "platform": "ios"}


async def test_another_account_cannot_take_a_registered_device(client: httpx.AsyncClient, stack: LocalStack) -> None:
    ada_id, ada = await sign_up(client, "ada")
    _, eve = await sign_up(client, "eve")

    added = await client.post("/api/devices", json=PHONE, headers=ada)
    again = await client.post("/api/devices", json={**PHONE, "platform": "android"}, headers=ada)
    taken = await client.post("/api/devices", json=PHONE, headers=eve)

    assert added.status_code == 201
    assert again.status_code == 200
    assert again.json()["id"] == added.json()["id"]
    assert again.json()["platform"] == "android"
    assert taken.status_code == 409
    assert taken.json() == {
        "detail": "This device is registered to another account; sign out there first.",
        "code": "conflict",
    }
    assert stack.primary is not None
    assert stack.primary.psql("SELECT user_id || ':' || platform FROM devices") == f"{ada_id}:android"


async def test_once_removed_a_device_may_be_registered_by_another_account(
    client: httpx.AsyncClient, stack: LocalStack
) -> None:
    _, ada = await sign_up(client, "ada")
    eve_id, eve = await sign_up(client, "eve")
    device_id = (await client.post("/api/devices", json=PHONE, headers=ada)).json()["id"]

    not_hers = await client.delete(f"/api/devices/{device_id}", headers=eve)
    removed = await client.delete(f"/api/devices/{device_id}", headers=ada)
    removed_again = await client.delete(f"/api/devices/{device_id}", headers=ada)
    taken = await client.post("/api/devices", json=PHONE, headers=eve)

    assert not_hers.status_code == 404
    assert removed.status_code == 204
    assert removed_again.status_code == 404
    assert taken.status_code == 201
    assert stack.primary is not None
    assert stack.primary.psql("SELECT user_id FROM devices") == str(eve_id)


async def test_each_account_lists_its_own_devices_without_their_tokens(
    client: httpx.AsyncClient, stack: LocalStack
) -> None:
    _, ada = await sign_up(client, "ada")
    _, eve = await sign_up(client, "eve")
    phone = (await client.post("/api/devices", json=PHONE, headers=ada)).json()
    laptop = (
        await client.post("/api/devices", json={"token": "ada-laptop-token", "platform": "web"}, headers=ada)
    ).json()
    await client.post("/api/devices", json={"token": "eve-phone-token", "platform": "android"}, headers=eve)
    stack.wait_for_replicas()

    mine = await client.get("/api/devices", headers=ada)
    first_page = await client.get("/api/devices", params={"limit": 1}, headers=ada)
    anonymous = await client.get("/api/devices")

    assert mine.status_code == 200
    body = mine.json()
    assert (body["total"], body["limit"], body["offset"]) == (2, 20, 0)
    assert [(d["id"], d["platform"]) for d in body["items"]] == [(laptop["id"], "web"), (phone["id"], "ios")]
    assert all(set(d) == {"id", "platform", "created_at"} for d in body["items"])
    assert "token" not in mine.text
    assert [d["id"] for d in first_page.json()["items"]] == [laptop["id"]]
    assert anonymous.status_code == 401


async def test_preferences_answer_every_type_with_the_defaults_the_push_path_applies(
    client: httpx.AsyncClient, stack: LocalStack
) -> None:
    from backend_app.db.lifecycle import get_database_router
    from backend_app.notifications import repository
    from backend_app.notifications.service import NOTIFICATION_TYPES

    ada_id, ada = await sign_up(client, "ada")
    untouched = (await client.get("/api/notifications/preferences", headers=ada)).json()
    changed = await client.put("/api/notifications/preferences", json={"type": "follow", "push": False}, headers=ada)
    stack.wait_for_replicas()
    after = (await client.get("/api/notifications/preferences", headers=ada)).json()

    assert [p["type"] for p in untouched] == list(NOTIFICATION_TYPES)
    assert all((p["push"], p["email"], p["default"]) == (True, True, True) for p in untouched)
    assert changed.json() == {"type": "follow", "push": False, "email": True, "default": False}
    by_type = {p["type"]: p for p in after}
    assert by_type["follow"] == {"type": "follow", "push": False, "email": True, "default": False}
    assert all(p["default"] for t, p in by_type.items() if t != "follow")

    # What the API shows is what the push path (one notification, and a batch) and the email check do.
    async with get_database_router().write_session() as session:
        batch = await repository.add_many_once(
            session,
            {
                f"check-{t}": {"user_id": ada_id, "type": t, "title": "t", "body": "b", "data": {}}
                for t in NOTIFICATION_TYPES
            },
        )
        for t in NOTIFICATION_TYPES:
            assert await repository.wants_push(session, ada_id, t) is by_type[t]["push"], t
            assert batch[f"check-{t}"].wants_push is by_type[t]["push"], t
            _, emailed = await repository.active_user_and_email_wish(session, ada_id, t)
            assert emailed is by_type[t]["email"], t

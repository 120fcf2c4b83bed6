"""DELETE /api/users/me: personal data gone, what others hold kept under an anonymised row."""

from __future__ import annotations

from pathlib import Path

import httpx

from backend_app.core.config import Settings
from devtools.devstack import LocalStack
from tests.accounts import PASSWORD, sign_up
from tests.conftest import SmtpSink, query, wait_for_mail


async def delete_me(client: httpx.AsyncClient, headers: dict[str, str], password: str = PASSWORD) -> httpx.Response:
    return await client.request("DELETE", "/api/users/me", json={"password": password}, headers=headers)


def verified(stack: LocalStack, *user_ids: int) -> None:
    """Confirm the accounts' addresses (posting jobs, applying and messaging need it)."""
    query(stack, f"UPDATE users SET email_verified_at = now() WHERE id IN ({', '.join(map(str, user_ids))})")


def count(stack: LocalStack, sql: str) -> int:
    return int(query(stack, sql).strip())


async def test_deletion_removes_personal_data_and_keeps_what_others_hold(
    client: httpx.AsyncClient, stack: LocalStack, settings: Settings
) -> None:
    boss_id, boss = await sign_up(client, "boss", role="employer")
    ann_id, ann = await sign_up(client, "ann")
    bob_id, bob = await sign_up(client, "bob")
    verified(stack, boss_id, ann_id, bob_id)
    job = (
        await client.post(
            "/api/jobs",
            json={"title": "Welder", "description": "Steel work, full time", "location": "Oslo"},
            headers=boss,
        )
    ).json()
    assert (
        await client.post(f"/api/jobs/{job['id']}/apply", json={"cover_letter": "Hi"}, headers=ann)
    ).status_code == 201
    boss_post = (await client.post("/api/posts", json={"body": "hiring"}, headers=boss)).json()
    bob_post = (await client.post("/api/posts", json={"body": "hello"}, headers=bob)).json()
    for headers, post in ((bob, boss_post), (boss, bob_post)):
        assert (await client.post(f"/api/posts/{post['id']}/like", headers=headers)).status_code == 200
        assert (
            await client.post(f"/api/posts/{post['id']}/comments", json={"body": "nice"}, headers=headers)
        ).status_code == 201
    assert (await client.post(f"/api/users/{bob_id}/follow", headers=boss)).status_code == 204
    assert (await client.post(f"/api/users/{boss_id}/follow", headers=bob)).status_code == 204
    device = await client.post("/api/devices", json={"token": "boss-phone-token", "platform": "ios"}, headers=boss)
    assert device.status_code == 201
    preference = {"type": "like", "push": False, "email": True}
    assert (await client.put("/api/notifications/preferences", json=preference, headers=boss)).status_code == 200
    assert (
        await client.post("/api/messages", json={"recipient_id": ann_id, "body": "Come in"}, headers=boss)
    ).status_code == 201
    assert (
        await client.post("/api/messages", json={"recipient_id": boss_id, "body": "Thanks"}, headers=ann)
    ).status_code == 201
    assert (await client.post("/api/auth/password-reset", json={"email": "boss@example.com"})).status_code == 202
    query(
        stack,
        f"INSERT INTO notifications (user_id, type, title, body) VALUES ({boss_id}, 'system', 'Hi', 'there');"
        f" INSERT INTO user_stats VALUES ({boss_id}, 1, 1, 1, 0, 1, 0);"
        f" INSERT INTO analytics_events (event_id, event_type, user_id, occurred_at)"
        f" VALUES (gen_random_uuid(), 'page_view', {boss_id}, now())",
    )
    media = Path(settings.media_root)
    (media / "uploads").mkdir(parents=True, exist_ok=True)
    (media / "uploads" / "boss.mp4").write_bytes(b"video")
    (media / "videos" / "bosskey").mkdir(parents=True, exist_ok=True)
    (media / "videos" / "bosskey" / "720p.mp4").write_bytes(b"rendition")
    query(
        stack,
        "INSERT INTO videos (owner_id, original_filename, stored_path, media_key, size_bytes, status)"
        f" VALUES ({boss_id}, 'me.mp4', 'uploads/boss.mp4', 'bosskey', 5, 'ready')",
    )

    deleted = await delete_me(client, boss)

    assert deleted.status_code == 204, deleted.text
    row = query(
        stack,
        "SELECT email, username, first_name, last_name, password_hash LIKE '$argon2%', is_admin,"
        f" deleted_at IS NOT NULL FROM users WHERE id = {boss_id}",
    ).strip()
    assert row == f"deleted-{boss_id}@deleted.invalid|deleted-{boss_id}|Deleted|account|f|f|t"
    for table, condition in (
        ("devices", f"user_id = {boss_id}"),
        ("notification_preferences", f"user_id = {boss_id}"),
        ("notifications", f"user_id = {boss_id}"),
        ("follows", f"{boss_id} IN (follower_id, followed_id)"),
        ("posts", f"author_id = {boss_id}"),
        ("post_likes", f"user_id = {boss_id} OR post_id = {boss_post['id']}"),
        ("comments", f"author_id = {boss_id} OR post_id = {boss_post['id']}"),
        ("password_reset_tokens", f"user_id = {boss_id}"),
        ("videos", f"owner_id = {boss_id}"),
        ("user_stats", f"user_id = {boss_id}"),
        ("analytics_events", f"user_id = {boss_id}"),
        ("auth_sessions", f"user_id = {boss_id} AND revoked_at IS NULL"),
    ):
        assert count(stack, f"SELECT count(*) FROM {table} WHERE {condition}") == 0, table
    assert not (media / "uploads" / "boss.mp4").exists()
    assert not (media / "videos" / "bosskey").exists()
    # What others hold stays: Bob's post, Ann's application (to a job now closed), the messages.
    assert count(stack, f"SELECT count(*) FROM posts WHERE id = {bob_post['id']}") == 1
    assert count(stack, "SELECT count(*) FROM analytics_events WHERE user_id IS NULL") == 1
    assert query(stack, f"SELECT closed_at IS NOT NULL FROM jobs WHERE id = {job['id']}").strip() == "t"
    assert query(stack, f"SELECT status FROM applications WHERE applicant_id = {ann_id}").strip() == "submitted"
    assert count(stack, f"SELECT count(*) FROM messages WHERE {boss_id} IN (sender_id, recipient_id)") == 2

    stack.wait_for_replicas()
    assert (await client.get("/api/users/me", headers=boss)).status_code == 401
    assert (await delete_me(client, boss)).status_code == 401
    old_login = await client.post("/api/auth/login", json={"email": "boss@example.com", "password": PASSWORD})
    assert old_login.status_code == 401
    assert (await client.get(f"/api/users/{boss_id}", headers=ann)).status_code == 404
    assert (await client.get("/api/users", params={"q": "deleted"}, headers=ann)).json()["total"] == 0
    thread = (await client.get(f"/api/messages/{boss_id}", headers=ann)).json()
    assert len(thread["items"]) == 2, thread
    new_id, _ = await sign_up(client, "boss", role="employer")
    assert new_id != boss_id


async def test_pending_tasks_of_the_account_are_cancelled_and_the_confirmation_queued(
    client: httpx.AsyncClient, stack: LocalStack
) -> None:
    """No relay runs here: the welcome email is still waiting when the account goes."""
    user_id, headers = await sign_up(client, "ann")

    assert (await delete_me(client, headers)).status_code == 204

    welcome = query(
        stack,
        "SELECT t.status, m.sent_at IS NOT NULL FROM task_records t JOIN outbox_messages m ON m.task_id = t.id"
        f" WHERE t.id = 'welcome-email-{user_id}'",
    ).strip()
    assert welcome == "cancelled|t"
    confirmation = query(
        stack,
        "SELECT t.status, t.owner_id IS NULL, t.payload->'kwargs'->>'user_email', m.sent_at IS NULL"
        f" FROM task_records t JOIN outbox_messages m ON m.task_id = t.id WHERE t.id = 'account-deleted-{user_id}'",
    ).strip()
    assert confirmation == "pending|t|ann@example.com|t"
    assert count(stack, f"SELECT count(*) FROM task_records WHERE owner_id = {user_id} AND status <> 'cancelled'") == 0


async def test_a_job_seekers_applications_in_progress_are_withdrawn(
    client: httpx.AsyncClient, stack: LocalStack
) -> None:
    boss_id, boss = await sign_up(client, "boss", role="employer")
    ann_id, ann = await sign_up(client, "ann")
    verified(stack, boss_id, ann_id)
    jobs = [
        (
            await client.post(
                "/api/jobs", json={"title": t, "description": "Full time work", "location": "x"}, headers=boss
            )
        ).json()
        for t in ("Welder", "Baker")
    ]
    for job in jobs:
        assert (await client.post(f"/api/jobs/{job['id']}/apply", json={}, headers=ann)).status_code == 201
    query(stack, f"UPDATE applications SET status = 'hired' WHERE job_id = {jobs[1]['id']}")

    assert (await delete_me(client, ann)).status_code == 204

    statuses = query(stack, f"SELECT job_id, status FROM applications WHERE applicant_id = {ann_id} ORDER BY job_id")
    assert statuses.split() == [f"{jobs[0]['id']}|withdrawn", f"{jobs[1]['id']}|hired"]
    stack.wait_for_replicas()
    received = (await client.get(f"/api/jobs/{jobs[0]['id']}/applications", headers=boss)).json()
    assert received["total"] == 1
    assert query(stack, f"SELECT closed_at FROM jobs WHERE employer_id = {boss_id} AND closed_at IS NOT NULL") == ""


async def test_a_wrong_password_is_401_and_deletes_nothing(client: httpx.AsyncClient, stack: LocalStack) -> None:
    ann_id, ann = await sign_up(client, "ann")
    bob_id, _ = await sign_up(client, "bob")
    assert (await client.post(f"/api/users/{bob_id}/follow", headers=ann)).status_code == 204

    wrong = await delete_me(client, ann, password="not-the-password-1")
    no_body = await client.request("DELETE", "/api/users/me", headers=ann)
    extra = await client.request("DELETE", "/api/users/me", json={"password": PASSWORD, "now": True}, headers=ann)

    assert wrong.status_code == 401
    assert wrong.json() == {"detail": "The password is not right.", "code": "wrong_password"}
    assert (no_body.status_code, extra.status_code) == (422, 422)
    assert query(stack, f"SELECT email, deleted_at FROM users WHERE id = {ann_id}").strip() == "ann@example.com|"
    assert count(stack, f"SELECT count(*) FROM follows WHERE follower_id = {ann_id}") == 1
    assert (await client.get("/api/users/me", headers=ann)).status_code == 200


async def test_wrong_passwords_count_against_the_accounts_sign_in_failures(
    client: httpx.AsyncClient, stack: LocalStack, settings: Settings
) -> None:
    _, ann = await sign_up(client, "ann")
    allowed = int(settings.rate_limit_login_failures_per_account.split("/")[0])

    answers = [(await delete_me(client, ann, password="not-the-password-1")).status_code for _ in range(allowed + 1)]
    login = await client.post("/api/auth/login", json={"email": "ann@example.com", "password": PASSWORD})

    assert answers[:allowed] == [401] * allowed
    assert answers[allowed] == 429
    assert login.status_code == 429
    assert query(stack, "SELECT deleted_at FROM users WHERE username = 'ann'").strip() == ""


async def test_the_confirmation_reaches_the_old_address(
    client: httpx.AsyncClient, stack: LocalStack, mail_workers: SmtpSink
) -> None:
    user_id, headers = await sign_up(client, "ann")
    await wait_for_mail(mail_workers, "ann@example.com")  # the welcome email

    assert (await delete_me(client, headers)).status_code == 204

    _, notice = await wait_for_mail(mail_workers, "ann@example.com", count=2)
    assert notice["To"].addresses[0].addr_spec == "ann@example.com"
    assert notice["Subject"].endswith("account has been deleted"), notice["Subject"]
    assert "your account ann has been deleted" in notice.get_body(preferencelist=("plain",)).get_content()
    # The log of sent emails keeps the old address only for this last one.
    deliveries = query(stack, "SELECT id, recipient FROM email_deliveries ORDER BY created_at").split()
    assert deliveries == [
        f"welcome-email-{user_id}|deleted-{user_id}@deleted.invalid",
        f"account-deleted-{user_id}|ann@example.com",
    ]


async def test_a_deleted_account_cannot_be_made_administrator(client: httpx.AsyncClient, stack: LocalStack) -> None:
    from tests.test_admin_command import admin_command

    user_id, headers = await sign_up(client, "ann")
    assert (await delete_me(client, headers)).status_code == 204

    result = admin_command("create-admin", f"deleted-{user_id}@deleted.invalid")

    assert result.returncode == 1
    assert query(stack, f"SELECT is_admin FROM users WHERE id = {user_id}").strip() == "f"


async def test_nobody_can_follow_or_message_a_deleted_account(client: httpx.AsyncClient, stack: LocalStack) -> None:
    gone_id, gone = await sign_up(client, "gone")
    _, ann = await sign_up(client, "ann")
    assert (await delete_me(client, gone)).status_code == 204
    stack.wait_for_replicas()

    follow = await client.post(f"/api/users/{gone_id}/follow", headers=ann)
    message = await client.post("/api/messages", json={"recipient_id": gone_id, "body": "Still there?"}, headers=ann)

    assert (follow.status_code, follow.json()["detail"]) == (404, "No such user.")
    assert message.status_code == 404
    assert count(stack, f"SELECT count(*) FROM follows WHERE followed_id = {gone_id}") == 0
    assert count(stack, f"SELECT count(*) FROM messages WHERE recipient_id = {gone_id}") == 0

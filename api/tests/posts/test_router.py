"""Posts, the feed, likes and comments, and the notifications they record."""

from __future__ import annotations

import httpx

from devtools.devstack import LocalStack
from tests.accounts import sign_up


def recorded_tasks(stack: LocalStack) -> list[str]:
    assert stack.primary is not None
    names = stack.primary.psql(
        "SELECT string_agg(name, ',' ORDER BY created_at) FROM task_records WHERE name LIKE '%notification%'"
    )
    return [n.rsplit(".", 1)[1] for n in names.split(",")] if names else []


async def test_feed_shows_followed_users_and_own_posts_with_counts(
    client: httpx.AsyncClient, stack: LocalStack
) -> None:
    ada_id, ada = await sign_up(client, "ada")
    bob_id, bob = await sign_up(client, "bob")
    _, eve = await sign_up(client, "eve")
    stack.wait_for_replicas()
    await client.post(f"/api/users/{bob_id}/follow", headers=ada)
    own = (await client.post("/api/posts", json={"body": "Ada's own post"}, headers=ada)).json()
    bobs = (await client.post("/api/posts", json={"body": "Bob writes"}, headers=bob)).json()
    await client.post("/api/posts", json={"body": "Eve is not followed"}, headers=eve)
    await client.post(f"/api/posts/{bobs['id']}/like", headers=ada)
    await client.post(f"/api/posts/{bobs['id']}/comments", json={"body": "Nice one"}, headers=ada)
    stack.wait_for_replicas()

    feed = (await client.get("/api/posts", headers=ada)).json()

    assert feed["total"] == 2
    assert [p["id"] for p in feed["items"]] == [bobs["id"], own["id"]]
    assert (feed["items"][0]["like_count"], feed["items"][0]["comment_count"]) == (1, 1)
    assert ada_id != bob_id


async def test_like_is_idempotent_and_notifies_the_author_once(client: httpx.AsyncClient, stack: LocalStack) -> None:
    _, ada = await sign_up(client, "ada")
    _, bob = await sign_up(client, "bob")
    post = (await client.post("/api/posts", json={"body": "Like me"}, headers=bob)).json()

    first = await client.post(f"/api/posts/{post['id']}/like", headers=ada)
    second = await client.post(f"/api/posts/{post['id']}/like", headers=ada)
    own = await client.post(f"/api/posts/{post['id']}/like", headers=bob)
    missing = await client.post("/api/posts/999999/like", headers=ada)

    assert first.json() == {"liked": True, "like_count": 1}
    assert second.json() == {"liked": True, "like_count": 1}
    assert own.json()["like_count"] == 2
    assert missing.status_code == 404
    assert recorded_tasks(stack).count("send_new_like_notification_job") == 1, (
        "no notification for a repeat or own like"
    )


async def test_comments_are_listed_and_notify_the_author(client: httpx.AsyncClient, stack: LocalStack) -> None:
    _, ada = await sign_up(client, "ada")
    _, bob = await sign_up(client, "bob")
    post = (await client.post("/api/posts", json={"body": "Discuss"}, headers=bob)).json()

    created = await client.post(f"/api/posts/{post['id']}/comments", json={"body": "First!"}, headers=ada)
    empty = await client.post(f"/api/posts/{post['id']}/comments", json={"body": "   "}, headers=ada)
    stack.wait_for_replicas()
    listed = (await client.get(f"/api/posts/{post['id']}/comments", headers=ada)).json()

    assert created.status_code == 201
    assert empty.status_code == 422
    assert [c["body"] for c in listed["items"]] == ["First!"]
    assert "send_new_comment_notification_job" in recorded_tasks(stack)
    assert stack.primary is not None
    assert "First!" in stack.primary.psql(
        "SELECT payload->'kwargs'->>'comment_preview' FROM task_records WHERE name LIKE '%comment%'"
    )


async def test_only_the_author_deletes_a_post_and_its_comments_and_likes_go_with_it(
    client: httpx.AsyncClient, stack: LocalStack
) -> None:
    _, ada = await sign_up(client, "ada")
    _, bob = await sign_up(client, "bob")
    post = (await client.post("/api/posts", json={"body": "Short-lived"}, headers=bob)).json()
    kept = (await client.post("/api/posts", json={"body": "Stays"}, headers=bob)).json()
    for target in (post, kept):
        await client.post(f"/api/posts/{target['id']}/like", headers=ada)
        await client.post(f"/api/posts/{target['id']}/comments", json={"body": "Nice"}, headers=ada)

    by_other = await client.delete(f"/api/posts/{post['id']}", headers=ada)
    deleted = await client.delete(f"/api/posts/{post['id']}", headers=bob)
    again = await client.delete(f"/api/posts/{post['id']}", headers=bob)
    anonymous = await client.delete(f"/api/posts/{kept['id']}")
    stack.wait_for_replicas()
    comments = await client.get(f"/api/posts/{post['id']}/comments", headers=ada)
    like = await client.post(f"/api/posts/{post['id']}/like", headers=ada)
    feed = (await client.get("/api/posts", headers=bob)).json()

    assert by_other.status_code == 403
    assert by_other.json()["detail"] == "Only the author can delete this post."
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert again.status_code == comments.status_code == like.status_code == 404
    assert anonymous.status_code == 401
    assert [(p["id"], p["like_count"], p["comment_count"]) for p in feed["items"]] == [(kept["id"], 1, 1)]
    assert stack.primary is not None
    assert stack.primary.psql(f"SELECT count(*) FROM comments WHERE post_id = {post['id']}") == "0"
    assert stack.primary.psql(f"SELECT count(*) FROM post_likes WHERE post_id = {post['id']}") == "0"


async def test_unlike_is_idempotent_and_the_count_follows(client: httpx.AsyncClient, stack: LocalStack) -> None:
    _, ada = await sign_up(client, "ada")
    _, bob = await sign_up(client, "bob")
    _, eve = await sign_up(client, "eve")
    post = (await client.post("/api/posts", json={"body": "Like me, then don't"}, headers=bob)).json()
    await client.post(f"/api/posts/{post['id']}/like", headers=ada)
    await client.post(f"/api/posts/{post['id']}/like", headers=eve)

    unliked = await client.delete(f"/api/posts/{post['id']}/like", headers=ada)
    unliked_again = await client.delete(f"/api/posts/{post['id']}/like", headers=ada)
    never_liked = await client.delete(f"/api/posts/{post['id']}/like", headers=bob)
    missing = await client.delete("/api/posts/999999/like", headers=ada)
    stack.wait_for_replicas()
    after_unlike = (await client.get("/api/posts", headers=bob)).json()["items"][0]["like_count"]
    liked_again = await client.post(f"/api/posts/{post['id']}/like", headers=ada)

    assert unliked.status_code == unliked_again.status_code == never_liked.status_code == 204
    assert missing.status_code == 404
    assert after_unlike == 1
    assert liked_again.json() == {"liked": True, "like_count": 2}
    assert recorded_tasks(stack).count("send_new_like_notification_job") == 2, (
        "one notification per liker: liking again after unliking notifies nobody again"
    )

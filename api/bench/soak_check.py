"""The soak's verdict: what was committed (the primary) against what arrived (the SMTP inbox,
the push endpoint, the notifications, analytics and video tables, the task records).

The database is the truth of what was committed: every row a request created implies its
background work (so a request whose answer was lost to a killed API still counts if it
committed), and every request the API accepted (2xx) must have its row.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.soak_load import Ledger
from bench.soak_sinks import PushEndpoint, SmtpInbox

UNFINISHED = ("pending", "queued", "started", "retrying")
FAILED = ("failed", "dead", "cancelled")


@dataclass
class Verdict:
    expected: Counter[str] = field(default_factory=Counter)  # per kind of effect
    lost: Counter[str] = field(default_factory=Counter)
    duplicated: Counter[str] = field(default_factory=Counter)
    unexpected: Counter[str] = field(default_factory=Counter)
    stuck: int = 0
    failed_tasks: int = 0
    task_statuses: Counter[str] = field(default_factory=Counter)
    tasks: int = 0
    outbox_unpublished: int = 0
    push_replays: int = 0  # pushes sent again with a delivered push's key (the endpoint kept one)
    problems: list[str] = field(default_factory=list)  # one line per lost/duplicated/stuck item (capped)
    not_finished: list[dict[str, Any]] = field(default_factory=list)

    @property
    def lost_total(self) -> int:
        return sum(self.lost.values())

    @property
    def duplicated_total(self) -> int:
        return sum(self.duplicated.values()) + sum(self.unexpected.values())

    @property
    def settled(self) -> bool:
        return self.lost_total == 0 and self.stuck == 0 and self.outbox_unpublished == 0


def _rows(psql: Callable[[str], str], sql: str) -> list[dict[str, Any]]:
    out = psql(f"SELECT coalesce(json_agg(t), '[]') FROM ({sql}) t")
    return json.loads(out or "[]")


def _canon(data: Any) -> str:
    return json.dumps(data or {}, sort_keys=True)


def check(psql: Callable[[str], str], ledger: Ledger, inbox: SmtpInbox, pushes: PushEndpoint) -> Verdict:
    verdict = Verdict()
    problems = verdict.problems

    def problem(line: str) -> None:
        if len(problems) < 200:
            problems.append(line)

    # -- task records -----------------------------------------------------------------------
    for row in _rows(psql, "SELECT status, count(*) AS n FROM task_records GROUP BY status"):
        verdict.task_statuses[row["status"]] = row["n"]
    verdict.tasks = sum(verdict.task_statuses.values())
    verdict.stuck = sum(verdict.task_statuses[s] for s in UNFINISHED)
    verdict.failed_tasks = sum(verdict.task_statuses[s] for s in FAILED)
    verdict.not_finished = _rows(
        psql,
        "SELECT id, name, queue, status, attempts, queued_at, started_at, updated_at,"
        " left(last_error, 300) AS last_error FROM task_records WHERE status <> 'succeeded' ORDER BY created_at",
    )
    for task in verdict.not_finished:
        problem(
            f"task {task['id']} {task['name'].rsplit('.', 1)[-1]} [{task['queue']}] {task['status']}"
            f" attempts={task['attempts']} updated={task['updated_at']} error={task['last_error']!r}"
        )
    verdict.outbox_unpublished = int(psql("SELECT count(*) FROM outbox_messages WHERE sent_at IS NULL") or 0)

    # -- accepted writes must be committed ---------------------------------------------------
    users = _rows(psql, "SELECT id, email FROM users")
    emails_in_db = {u["email"] for u in users}
    for email in sorted(ledger.registered_emails - emails_in_db):
        verdict.lost["accepted registration (row)"] += 1
        problem(f"registration of {email} answered 201 but the user is not in the primary")
    messages = _rows(
        psql,
        "SELECT m.id, m.sender_id, m.recipient_id, m.body, coalesce(p.email, true) AS wants_email,"
        " coalesce(p.push, true) AS wants_push FROM messages m LEFT JOIN notification_preferences p"
        " ON p.user_id = m.recipient_id AND p.type = 'message'",
    )
    for body in sorted(ledger.message_bodies - {m["body"] for m in messages}):
        verdict.lost["accepted message (row)"] += 1
        problem(f"message {body} answered 201 but is not in the primary")
    comments = _rows(
        psql,
        "SELECT c.id, c.author_id, c.body, p.id AS post_id, p.author_id AS owner_id,"
        " coalesce(pref.push, true) AS wants_push FROM comments c JOIN posts p ON p.id = c.post_id"
        " LEFT JOIN notification_preferences pref ON pref.user_id = p.author_id AND pref.type = 'comment'",
    )
    for body in sorted(ledger.comment_bodies - {c["body"] for c in comments}):
        verdict.lost["accepted comment (row)"] += 1
        problem(f"comment {body} answered 201 but is not in the primary")
    applications = _rows(
        psql, "SELECT a.id, a.job_id, a.applicant_id, j.employer_id FROM applications a JOIN jobs j ON j.id = a.job_id"
    )
    for pair in sorted(ledger.applications - {(a["job_id"], a["applicant_id"]) for a in applications}):
        verdict.lost["accepted application (row)"] += 1
        problem(f"application {pair} answered 201 but is not in the primary")
    follows = _rows(
        psql,
        "SELECT f.follower_id, f.followed_id, coalesce(p.push, true) AS wants_push FROM follows f"
        " LEFT JOIN notification_preferences p ON p.user_id = f.followed_id AND p.type = 'follow'",
    )
    for pair in sorted(ledger.follows - {(f["follower_id"], f["followed_id"]) for f in follows}):
        verdict.lost["accepted follow (row)"] += 1
        problem(f"follow {pair} answered 204 but is not in the primary")
    likes = _rows(
        psql,
        "SELECT l.post_id, l.user_id, p.author_id AS owner_id, coalesce(pref.push, true) AS wants_push"
        " FROM post_likes l JOIN posts p ON p.id = l.post_id"
        " LEFT JOIN notification_preferences pref ON pref.user_id = p.author_id AND pref.type = 'like'",
    )
    for pair in sorted(ledger.likes - {(lk["post_id"], lk["user_id"]) for lk in likes}):
        verdict.lost["accepted like (row)"] += 1
        problem(f"like {pair} answered 200 but is not in the primary")
    resets = _rows(psql, "SELECT id, user_id FROM password_reset_tokens")
    resets_per_user = Counter(r["user_id"] for r in resets)
    for user_id, accepted in ledger.reset_requests.items():
        if resets_per_user[user_id] < accepted:
            verdict.lost["accepted password reset (row)"] += accepted - resets_per_user[user_id]
            problem(f"user {user_id}: {accepted} resets answered 202, {resets_per_user[user_id]} tokens stored")
    videos = _rows(psql, "SELECT id, status, progress, task_id, left(error, 200) AS error FROM videos")
    for video_id in sorted(ledger.videos - {v["id"] for v in videos}):
        verdict.lost["accepted video (row)"] += 1
        problem(f"video {video_id} answered 202 but is not in the primary")

    # -- emails: each task's Message-ID is <task id@domain>; each exactly once --------------
    expected_mail: dict[str, str] = {}
    for user in users:
        expected_mail[f"welcome-email-{user['id']}"] = "email: welcome"
    for reset in resets:
        expected_mail[f"password-reset-{reset['id']}"] = "email: password reset"
    for application in applications:
        expected_mail[f"application-email-{application['id']}"] = "email: application"
    for message in messages:
        if message["wants_email"]:
            expected_mail[f"message-email-{message['id']}"] = "email: message"
    received = Counter(
        m.message_id[1:].split("@", 1)[0] if m.message_id.startswith("<") else m.message_id for m in inbox.snapshot()
    )
    for task_id, kind in expected_mail.items():
        verdict.expected[kind] += 1
        if received[task_id] == 0:
            verdict.lost[kind] += 1
            problem(f"{kind} {task_id} never arrived")
        elif received[task_id] > 1:
            verdict.duplicated[kind] += received[task_id] - 1
            problem(f"{kind} {task_id} arrived {received[task_id]} times")
    for task_id, count in received.items():
        if task_id not in expected_mail:
            verdict.unexpected["email"] += count
            problem(f"unexpected email {task_id} ({count})")

    # -- in-app notifications and pushes ------------------------------------------------------
    devices: dict[int, list[str]] = {}
    for device in _rows(psql, "SELECT user_id, token FROM devices"):
        devices.setdefault(device["user_id"], []).append(device["token"])
    wanted: list[tuple[str, int, str, str, bool]] = []  # kind, user, canonical data, body key, push
    for f in follows:
        wanted.append(("follow", f["followed_id"], _canon({"follower_id": f["follower_id"]}), "", f["wants_push"]))
    for lk in likes:
        if lk["owner_id"] != lk["user_id"]:
            data = _canon({"liker_id": lk["user_id"], "post_id": lk["post_id"]})
            wanted.append(("like", lk["owner_id"], data, "", lk["wants_push"]))
    for c in comments:
        if c["owner_id"] != c["author_id"]:
            data = _canon({"commenter_id": c["author_id"], "post_id": c["post_id"]})
            wanted.append(("comment", c["owner_id"], data, c["body"], c["wants_push"]))
    for m in messages:
        wanted.append(("message", m["recipient_id"], _canon({"sender_id": m["sender_id"]}), m["body"], m["wants_push"]))

    stored: Counter[tuple[str, int, str, str]] = Counter()
    for n in _rows(psql, "SELECT user_id, type, body, data FROM notifications"):
        body_key = n["body"] if n["type"] in ("comment", "message") else ""
        stored[(n["type"], n["user_id"], _canon(n["data"]), body_key)] += 1
    pushed: Counter[tuple[str, str, str]] = Counter()
    pushed_by_device: dict[tuple[str, str], set[str]] = {}
    verdict.push_replays = pushes.replays
    for p in pushes.snapshot():
        pushed[(p.token, p.data, p.body)] += 1
        pushed_by_device.setdefault((p.token, p.data), set()).add(p.body)
    matched_pushes: set[tuple[str, str, str]] = set()
    for kind, user_id, data, body_key, wants_push in wanted:
        count = stored[(kind, user_id, data, body_key)]
        verdict.expected[f"notification: {kind}"] += 1
        if count == 0:
            verdict.lost[f"notification: {kind}"] += 1
            problem(f"in-app {kind} notification for user {user_id} {data} {body_key} missing")
        elif count > 1:
            verdict.duplicated[f"notification: {kind}"] += count - 1
            problem(f"in-app {kind} notification for user {user_id} {data} stored {count} times")
        if not wants_push:
            continue
        for token in devices.get(user_id, []):
            verdict.expected[f"push: {kind}"] += 1
            bodies = pushed_by_device.get((token, data), set())
            keys = [(token, data, body) for body in bodies if not body_key or body == body_key]
            total = sum(pushed[key] for key in keys)
            matched_pushes.update(keys)
            if total == 0:
                verdict.lost[f"push: {kind}"] += 1
                problem(f"push of {kind} to {token} {data} {body_key} never arrived")
            elif total > 1:
                verdict.duplicated[f"push: {kind}"] += total - 1
                problem(f"push of {kind} to {token} {data} arrived {total} times")
    for key, count in pushed.items():
        if key not in matched_pushes:
            verdict.unexpected["push"] += count
            problem(f"unexpected push {key} ({count})")

    # -- videos ---------------------------------------------------------------------------------
    for video in videos:
        verdict.expected["video ready"] += 1
        if video["status"] != "ready":
            verdict.lost["video ready"] += 1
            problem(
                f"video {video['id']} {video['status']} {video['progress']}% task {video['task_id']}"
                f" error={video['error']!r}"
            )

    # -- analytics events: each accepted marker stored exactly once ----------------------------
    counts = {
        row["marker"]: row["n"]
        for row in _rows(
            psql,
            "SELECT data->>'soak' AS marker, count(*) AS n FROM analytics_events WHERE data ? 'soak' GROUP BY 1",
        )
    }
    for marker in ledger.analytics_accepted:
        verdict.expected["analytics event"] += 1
        if counts.get(marker, 0) == 0:
            verdict.lost["analytics event"] += 1
            problem(f"analytics event {marker} accepted (202) but not stored")
        elif counts[marker] > 1:
            verdict.duplicated["analytics event"] += counts[marker] - 1
    for marker in ledger.analytics_uncertain:
        if counts.get(marker, 0) > 1:
            verdict.duplicated["analytics event"] += counts[marker] - 1
    return verdict

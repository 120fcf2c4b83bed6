"""The soak's steady mixed load through the public HTTP API, and a ledger of what was accepted.

Every request is recorded by outcome:
- accepted: a 2xx; what it implies is checked at the end;
- refused: a 503 with Retry-After that was still refused after retrying, or the API could not
  be reached (connection refused) for a whole minute: the client knows it was not accepted;
- uncertain: the connection broke after the request was sent (the API was killed): the
  client cannot know; the database says at the end whether it was committed, and if it was,
  its effects are expected like an accepted one's;
- failed: a 500 or another 5xx, or a 503 without Retry-After: an application failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import httpx

PASSWORD = "Soak-pass-2468!"  # noqa: S105 - the throwaway accounts of a throwaway stack
RETRY_WINDOW_SECONDS = 60.0


@dataclass
class User:
    id: int
    username: str
    email: str
    role: str
    token: str = ""
    device: str = ""
    name: str = ""


@dataclass
class Ledger:
    accepted: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    uncertain: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)  # 4xx, by "op status"
    failures: list[str] = field(default_factory=list)  # 5xx other than a proper 503
    registered_emails: set[str] = field(default_factory=set)
    reset_requests: Counter[int] = field(default_factory=Counter)  # user id -> accepted resets
    applications: set[tuple[int, int]] = field(default_factory=set)  # (job id, applicant id)
    follows: set[tuple[int, int]] = field(default_factory=set)
    likes: set[tuple[int, int]] = field(default_factory=set)  # (post id, user id)
    comment_bodies: set[str] = field(default_factory=set)
    message_bodies: set[str] = field(default_factory=set)
    jobs: set[int] = field(default_factory=set)
    videos: set[int] = field(default_factory=set)
    analytics_accepted: set[str] = field(default_factory=set)
    analytics_uncertain: set[str] = field(default_factory=set)

    def total(self, counter: Counter[str]) -> int:
        return sum(counter.values())


def tiny_video(seconds: float = 1.0, size: int = 64, fps: int = 10) -> bytes:
    """A real H.264 MP4 (a moving grey ramp), made once with PyAV."""
    import av

    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size, size, "yuv420p"
        for index in range(int(seconds * fps)):
            frame = av.VideoFrame(size, size, "yuv420p")
            line = frame.planes[0].line_size
            frame.planes[0].update(bytes((x + 5 * index) % 256 for x in range(line)) * size)
            for plane in (1, 2):
                frame.planes[plane].update(bytes([128]) * (frame.planes[plane].line_size * (size // 2)))
            frame.pts = index
            frame.time_base = Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


class Load:
    """A few concurrent clients sending a modest, steady mix of requests."""

    def __init__(
        self,
        base_url: str,
        *,
        clients: int,
        pause: float,
        seed: int | None = None,
        confirm_address: Callable[[int], Awaitable[bool]] | None = None,
    ) -> None:
        self.base_url = base_url
        # Posting jobs, applying and messaging need a confirmed address: the soak confirms
        # each new account's directly on the primary (a bench shortcut for the emailed link).
        self.confirm_address = confirm_address
        self.clients = clients
        self.pause = pause
        self.ledger = Ledger()
        self.random = random.Random(seed)
        self.run_id = uuid.uuid4().hex[:6]
        self.counter = 0
        self.users: list[User] = []
        self.canary_users: list[User] = []
        self.jobs: list[tuple[int, int]] = []  # (job id, employer id)
        self.posts: list[tuple[int, int]] = []  # (post id, author id)
        self.video = tiny_video()
        self.long_video = tiny_video(seconds=8, size=720, fps=25)  # a few seconds of work for a horse
        self.http: httpx.AsyncClient | None = None
        self.stopping = asyncio.Event()

    async def __aenter__(self) -> Load:
        self.http = httpx.AsyncClient(
            base_url=self.base_url, timeout=httpx.Timeout(60, connect=5), limits=httpx.Limits(max_connections=20)
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.http is not None
        await self.http.aclose()

    # -- one request, with the retry policy of the module docstring -------------------------

    async def call(
        self,
        op: str,
        method: str,
        path: str,
        *,
        user: User | None = None,
        idempotent: bool = False,
        **kwargs: Any,
    ) -> httpx.Response | None:
        """The response when the API answered 2xx or 4xx; None when refused, uncertain or failed."""
        assert self.http is not None
        headers = {"Authorization": f"Bearer {user.token}"} if user is not None and user.token else {}
        deadline = time.monotonic() + RETRY_WINDOW_SECONDS
        while True:
            try:
                response = await self.http.request(method, path, headers=headers, **kwargs)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout):
                # Never reached the API (it is down or restarting): safe to send again.
                if time.monotonic() > deadline:
                    self.ledger.refused[f"{op} (API unreachable)"] += 1
                    return None
                await asyncio.sleep(1)
                continue
            except httpx.TransportError as error:
                if idempotent and time.monotonic() < deadline:
                    await asyncio.sleep(1)
                    continue
                self.ledger.uncertain[f"{op} ({type(error).__name__})"] += 1
                return None
            if 200 <= response.status_code < 300:
                self.ledger.accepted[op] += 1
                return response
            if response.status_code == 503 and response.headers.get("Retry-After"):
                if time.monotonic() > deadline:
                    self.ledger.refused[f"{op} (503)"] += 1
                    return None
                await asyncio.sleep(min(float(response.headers["Retry-After"]), 5.0))
                continue
            if response.status_code >= 500:
                self.ledger.failures.append(
                    f"{time.strftime('%H:%M:%S')} {method} {path} -> {response.status_code}: {response.text[:200]}"
                )
                return None
            self.ledger.rejected[f"{op} {response.status_code}"] += 1
            return response

    # -- the operations ---------------------------------------------------------------------

    def _next(self) -> int:
        self.counter += 1
        return self.counter

    async def register(self, role: str, *, canary: bool = False, quiet_email: bool = False) -> User | None:
        n = self._next()
        username = f"soak{self.run_id}{'c' if canary else 'u'}{n}"
        email = f"{username}@example.com"
        body = {
            "email": email,
            "username": username,
            "password": PASSWORD,
            "first_name": "Soak",
            "last_name": f"User{n}",
            "role": role,
        }
        response = await self.call("register", "POST", "/api/auth/register", json=body)
        if response is None or response.status_code != 201:
            return None
        self.ledger.registered_emails.add(email)
        user = User(id=response.json()["id"], username=username, email=email, role=role, name=f"Soak User{n}")
        if self.confirm_address is not None and not await self.confirm_address(user.id):
            return None
        if not await self.login(user):
            return None
        user.device = f"device-{username}"
        response = await self.call(
            "device", "POST", "/api/devices", user=user, idempotent=True, json={"token": user.device, "platform": "web"}
        )
        if response is None or response.status_code != 201:
            return None
        if quiet_email:
            response = await self.call(
                "preference",
                "PUT",
                "/api/notifications/preferences",
                user=user,
                idempotent=True,
                json={"type": "message", "push": True, "email": False},
            )
            if response is None or response.status_code != 200:
                return None
        (self.canary_users if canary else self.users).append(user)
        return user

    async def login(self, user: User) -> bool:
        response = await self.call(
            "login", "POST", "/api/auth/login", idempotent=True, json={"email": user.email, "password": PASSWORD}
        )
        if response is None or response.status_code != 200:
            return False
        user.token = response.json()["access_token"]
        return True

    def _pick(self, role: str | None = None) -> User | None:
        candidates = [u for u in self.users if role is None or u.role == role]
        return self.random.choice(candidates) if candidates else None

    async def password_reset(self) -> None:
        user = self._pick()
        if user is None:
            return
        response = await self.call("password_reset", "POST", "/api/auth/password-reset", json={"email": user.email})
        if response is not None and response.status_code == 202:
            self.ledger.reset_requests[user.id] += 1

    async def post_job(self) -> None:
        employer = self._pick("employer")
        if employer is None:
            return
        n = self._next()
        body = {"title": f"Soak job {n}", "description": f"A job posted by the soak ({n}).", "location": "Remote"}
        response = await self.call("post_job", "POST", "/api/jobs", user=employer, json=body)
        if response is not None and response.status_code == 201:
            job_id = response.json()["id"]
            self.ledger.jobs.add(job_id)
            self.jobs.append((job_id, employer.id))

    async def apply(self) -> None:
        seeker = self._pick("job_seeker")
        open_jobs = [job for job in self.jobs if (job[0], seeker.id) not in self.ledger.applications] if seeker else []
        if seeker is None or not open_jobs:
            return
        job_id, _ = self.random.choice(open_jobs)
        # Marked before sending: a retry must not apply twice (the API would answer 409).
        self.ledger.applications.add((job_id, seeker.id))
        response = await self.call(
            "apply", "POST", f"/api/jobs/{job_id}/apply", user=seeker, json={"cover_letter": "Hello from the soak."}
        )
        if response is None or response.status_code != 201:
            self.ledger.applications.discard((job_id, seeker.id))

    async def follow(self, follower: User | None = None, followed: User | None = None) -> tuple[User, User] | None:
        follower = follower or self._pick()
        if follower is None:
            return None
        if followed is None:
            candidates = [
                u for u in self.users if u.id != follower.id and (follower.id, u.id) not in self.ledger.follows
            ]
            if not candidates:
                return None
            followed = self.random.choice(candidates)
        response = await self.call("follow", "POST", f"/api/users/{followed.id}/follow", user=follower, idempotent=True)
        if response is None or response.status_code != 204:
            return None
        self.ledger.follows.add((follower.id, followed.id))
        return follower, followed

    async def create_post(self) -> None:
        author = self._pick()
        if author is None:
            return
        response = await self.call(
            "post", "POST", "/api/posts", user=author, json={"body": f"soak post {self._next()}"}
        )
        if response is not None and response.status_code == 201:
            self.posts.append((response.json()["id"], author.id))

    async def like(self) -> None:
        user = self._pick()
        if user is None:
            return
        candidates = [p for p in self.posts if p[1] != user.id and (p[0], user.id) not in self.ledger.likes]
        if not candidates:
            return
        post_id, _ = self.random.choice(candidates)
        response = await self.call("like", "POST", f"/api/posts/{post_id}/like", user=user, idempotent=True)
        if response is not None and response.status_code == 200:
            self.ledger.likes.add((post_id, user.id))

    async def comment(self) -> None:
        user = self._pick()
        candidates = [p for p in self.posts if user is not None and p[1] != user.id]
        if user is None or not candidates:
            return
        post_id, _ = self.random.choice(candidates)
        body = f"soak-comment-{uuid.uuid4().hex}"
        response = await self.call("comment", "POST", f"/api/posts/{post_id}/comments", user=user, json={"body": body})
        if response is not None and response.status_code == 201:
            self.ledger.comment_bodies.add(body)

    async def message(self) -> None:
        sender = self._pick()
        candidates = [u for u in self.users if sender is not None and u.id != sender.id]
        if sender is None or not candidates:
            return
        recipient = self.random.choice(candidates)
        body = f"soak-message-{uuid.uuid4().hex}"
        response = await self.call(
            "message", "POST", "/api/messages", user=sender, json={"recipient_id": recipient.id, "body": body}
        )
        if response is not None and response.status_code == 201:
            self.ledger.message_bodies.add(body)

    async def analytics(self, count: int | None = None) -> list[str]:
        user = self._pick() if self.random.random() < 0.5 else None
        markers = [uuid.uuid4().hex for _ in range(count or self.random.randint(1, 5))]
        events = [{"event_type": "soak_event", "data": {"soak": marker}} for marker in markers]
        response = await self.call("analytics", "POST", "/api/analytics/events", user=user, json={"events": events})
        if response is not None and response.status_code == 202:
            self.ledger.analytics_accepted.update(markers)
            return markers
        if response is None:
            self.ledger.analytics_uncertain.update(markers)
        return []

    async def upload_video(self, *, long: bool = False) -> int | None:
        user = self._pick()
        if user is None:
            return None
        content = self.long_video if long else self.video
        response = await self.call(
            "video_upload",
            "POST",
            "/api/videos/upload",
            user=user,
            files={"file": ("soak.mp4", content, "video/mp4")},
        )
        if response is None or response.status_code != 202:
            return None
        video_id = int(response.json()["video_id"])
        self.ledger.videos.add(video_id)
        return video_id

    async def read_something(self) -> None:
        user = self._pick()
        if user is None:
            return
        if self.random.random() < 0.5:
            await self.call("read_jobs", "GET", "/api/jobs", user=user, idempotent=True)
        else:
            await self.call("read_notifications", "GET", "/api/notifications", user=user, idempotent=True)

    async def sign_in(self) -> None:
        user = self._pick()
        if user is not None:
            await self.login(user)

    # -- the mix ------------------------------------------------------------------------------

    async def populate(self, employers: int, seekers: int) -> None:
        for index in range(employers + seekers):
            await self.register("employer" if index < employers else "job_seeker", quiet_email=index % 4 == 3)
        for _ in range(2):
            await self.post_job()
            await self.create_post()

    def weighted_ops(self) -> list[tuple[float, Any]]:
        return [
            (
                0.6,
                lambda: self.register(
                    self.random.choice(["employer", "job_seeker", "job_seeker"]),
                    quiet_email=self.random.random() < 0.25,
                ),
            ),
            (1.0, self.sign_in),
            (1.0, self.password_reset),
            (0.8, self.post_job),
            (1.5, self.apply),
            (1.5, self.follow),
            (1.0, self.create_post),
            (1.5, self.like),
            (1.5, self.comment),
            (1.5, self.message),
            (2.0, self.analytics),
            (0.25, self.upload_video),
            (1.5, self.read_something),
        ]

    async def client_loop(self) -> None:
        ops = self.weighted_ops()
        weights = [w for w, _ in ops]
        while not self.stopping.is_set():
            _, op = self.random.choices(ops, weights=weights)[0]
            try:
                await op()
            except Exception as error:  # a bug in the soak itself must not end the load silently
                self.ledger.failures.append(f"soak client error: {type(error).__name__}: {error}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=self.random.uniform(0.5, 1.5) * self.pause)

    async def run(self) -> None:
        await asyncio.gather(*(self.client_loop() for _ in range(self.clients)))

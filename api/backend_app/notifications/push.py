"""Push delivery through a provider adapter chosen by PUSH_PROVIDER.

- `log` (default): the push is written to the worker log.
- `webhook`: POST JSON `{token, platform, title, body, data}` to PUSH_WEBHOOK_URL (with
  `Authorization: Bearer PUSH_WEBHOOK_SECRET` when set). 2xx delivered; 410 Gone means
  the token is invalid (a 404 is a wrong URL, not a dead token); 5xx, 429 and timeouts
  are retried.
- `onesignal`: OneSignal's REST API (`POST {ONESIGNAL_API_URL}/notifications`, app id and
  REST key from settings); ids OneSignal reports in `errors.invalid_player_ids` are invalid.
- `fcm`: Firebase Cloud Messaging HTTP v1 (`POST {FCM_API_URL}/v1/projects/{project}/messages:send`)
  with an OAuth2 token minted from the service-account file FCM_CREDENTIALS_FILE by
  google-auth; `UNREGISTERED` (404) and an invalid registration token (400) are invalid.

Each push carries its notification's key, so that a provider that deduplicates can tell a
repeat from a new push. A job can be stopped after the provider took a push and before the
notification is marked pushed (its worker SIGKILLed, the machine gone); the job runs again
and sends that push again. The webhook sends an `Idempotency-Key` header per device (the IETF
httpapi draft; a receiver that honours it delivers the push once) and OneSignal an
`idempotency_key` (a UUID it remembers for 30 days). FCM's HTTP v1 API has no such key: there
a push can, in that one case, arrive twice.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol

import httpx

from backend_app.core.config import Settings
from backend_app.tasks.errors import PermanentTaskError, TransientTaskError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Push:
    title: str
    body: str
    data: dict[str, Any] = field(default_factory=dict)
    # Names the notification across its job's attempts ("notification-<id>"): the provider's
    # idempotency key is made from it.
    key: str = ""

    def key_for_device(self, token: str) -> str:
        """The key of this push to one device. The token is hashed: device tokens are
        credentials, and idempotency keys end up in proxies' and providers' logs."""
        return f"{self.key}-{hashlib.sha256(token.encode()).hexdigest()[:16]}"

    def key_for_devices(self, tokens: list[str]) -> str:
        """One UUID for this push to these devices (OneSignal wants a UUID): the same on every
        attempt, another for another set of devices (a retry that leaves some out)."""
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"jobplatform:{self.key}:{','.join(sorted(tokens))}"))


@dataclass(frozen=True)
class Target:
    token: str
    platform: str


class PushProvider(Protocol):
    def send(self, targets: list[Target], push: Push, reached: set[str]) -> set[str]:
        """Deliver to every target; return the tokens the provider says are invalid.

        Adds each token the push reached to `reached` as it goes, so that when something
        fails part-way the caller still knows which devices have it (and a retry skips them)."""


def _each_device(targets: list[Target], deliver: Callable[[Target], bool], reached: set[str]) -> set[str]:
    """Push to the targets one request each (`deliver` answers False for an invalid token);
    returns the invalid tokens."""
    invalid: set[str] = set()
    for target in targets:
        (reached if deliver(target) else invalid).add(target.token)
    return invalid


def _raise_for_status(response: httpx.Response, provider: str) -> None:
    if response.status_code == 429 or response.status_code >= 500:
        raise TransientTaskError(f"{provider} answered {response.status_code}")
    if response.status_code >= 400:
        raise PermanentTaskError(f"{provider} refused the push: {response.status_code} {response.text[:200]}")


class LogProvider:
    def send(self, targets: list[Target], push: Push, reached: set[str]) -> set[str]:
        reached.update(target.token for target in targets)
        logger.info("push (PUSH_PROVIDER=log) to %d device(s): %s: %s", len(targets), push.title, push.body)
        return set()


class WebhookProvider:
    def __init__(self, settings: Settings, client: httpx.Client) -> None:
        self.url = settings.push_webhook_url
        self.secret = settings.push_webhook_secret
        self.client = client

    def send(self, targets: list[Target], push: Push, reached: set[str]) -> set[str]:
        authorization = {"Authorization": f"Bearer {self.secret}"} if self.secret else {}

        def deliver(target: Target) -> bool:
            headers = (
                {**authorization, "Idempotency-Key": push.key_for_device(target.token)} if push.key else authorization
            )
            payload = {
                "token": target.token,
                "platform": target.platform,
                "title": push.title,
                "body": push.body,
                "data": push.data,
            }
            try:
                response = self.client.post(self.url, json=payload, headers=headers)
            except httpx.TransportError as error:
                raise TransientTaskError(f"push webhook unreachable: {type(error).__name__}") from None
            if response.status_code == 410:
                return False
            _raise_for_status(response, "push webhook")
            return True

        return _each_device(targets, deliver, reached)


class OneSignalProvider:
    def __init__(self, settings: Settings, client: httpx.Client) -> None:
        self.url = settings.onesignal_api_url.rstrip("/") + "/notifications"
        self.app_id = settings.onesignal_app_id
        self.api_key = settings.onesignal_api_key
        self.client = client

    def send(self, targets: list[Target], push: Push, reached: set[str]) -> set[str]:
        payload = {
            "app_id": self.app_id,
            "include_player_ids": [t.token for t in targets],
            "headings": {"en": push.title},
            "contents": {"en": push.body},
            "data": push.data,
        }
        if push.key:
            payload["idempotency_key"] = push.key_for_devices([t.token for t in targets])
        try:
            response = self.client.post(self.url, json=payload, headers={"Authorization": f"Basic {self.api_key}"})
        except httpx.TransportError as error:
            raise TransientTaskError(f"OneSignal unreachable: {type(error).__name__}") from None
        _raise_for_status(response, "OneSignal")
        errors = response.json().get("errors") or {}
        invalid = set(errors.get("invalid_player_ids", [])) if isinstance(errors, dict) else set()
        reached.update(target.token for target in targets if target.token not in invalid)
        return invalid


FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"


@lru_cache
def _fcm_credentials(credentials_file: str) -> Any:
    # Cached per process: google-auth refreshes the token only when it expires.
    from google.oauth2 import service_account

    return service_account.Credentials.from_service_account_file(credentials_file, scopes=[FCM_SCOPE])


class FcmProvider:
    def __init__(self, settings: Settings, client: httpx.Client) -> None:
        self.credentials = _fcm_credentials(settings.fcm_credentials_file)
        project = settings.fcm_project_id or self.credentials.project_id
        self.url = f"{settings.fcm_api_url.rstrip('/')}/v1/projects/{project}/messages:send"
        self.client = client

    def _access_token(self) -> str:
        from google.auth.exceptions import GoogleAuthError
        from google.auth.transport.requests import Request

        if not self.credentials.valid:
            try:
                self.credentials.refresh(Request())
            except GoogleAuthError as error:
                raise TransientTaskError(f"FCM token refresh failed: {type(error).__name__}") from None
        return self.credentials.token

    def send(self, targets: list[Target], push: Push, reached: set[str]) -> set[str]:
        headers = {"Authorization": f"Bearer {self._access_token()}"}

        def deliver(target: Target) -> bool:
            message = {
                "message": {
                    "token": target.token,
                    "notification": {"title": push.title, "body": push.body},
                    # FCM data values must be strings.
                    "data": {key: str(value) for key, value in push.data.items()},
                }
            }
            try:
                response = self.client.post(self.url, json=message, headers=headers)
            except httpx.TransportError as error:
                raise TransientTaskError(f"FCM unreachable: {type(error).__name__}") from None
            if _fcm_token_is_dead(response):
                return False
            _raise_for_status(response, "FCM")
            return True

        return _each_device(targets, deliver, reached)


def _fcm_token_is_dead(response: httpx.Response) -> bool:
    """FCM says so in the error body: UNREGISTERED, SENDER_ID_MISMATCH, or a bad token argument."""
    if response.status_code not in (400, 403, 404):
        return False
    try:
        error = response.json().get("error", {})
    except ValueError:
        return False
    codes = {detail.get("errorCode") for detail in error.get("details", []) if isinstance(detail, dict)}
    if codes & {"UNREGISTERED", "SENDER_ID_MISMATCH"}:
        return True
    return "INVALID_ARGUMENT" in codes and "registration token" in str(error.get("message", "")).lower()


def provider_for(settings: Settings, client: httpx.Client) -> PushProvider:
    if settings.push_provider == "webhook":
        return WebhookProvider(settings, client)
    if settings.push_provider == "onesignal":
        return OneSignalProvider(settings, client)
    if settings.push_provider == "fcm":
        return FcmProvider(settings, client)
    return LogProvider()

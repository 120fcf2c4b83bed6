"""Push delivery through a provider adapter chosen by PUSH_PROVIDER.

- `log` (default): the push is written to the worker log.
- `webhook`: POST JSON `{token, platform, title, body, data}` to PUSH_WEBHOOK_URL (with
  `Authorization: Bearer PUSH_WEBHOOK_SECRET` when set). 2xx delivered; 404/410 means
  the token is invalid; 5xx, 429 and timeouts are retried.
- `onesignal`: OneSignal's REST API (`POST {ONESIGNAL_API_URL}/notifications`, app id and
  REST key from settings); ids OneSignal reports in `errors.invalid_player_ids` are invalid.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class Target:
    token: str
    platform: str


class PushProvider(Protocol):
    def send(self, targets: list[Target], push: Push) -> set[str]:
        """Deliver to every target; return the tokens the provider says are invalid."""


def _raise_for_status(response: httpx.Response, provider: str) -> None:
    if response.status_code == 429 or response.status_code >= 500:
        raise TransientTaskError(f"{provider} answered {response.status_code}")
    if response.status_code >= 400:
        raise PermanentTaskError(f"{provider} refused the push: {response.status_code} {response.text[:200]}")


class LogProvider:
    def send(self, targets: list[Target], push: Push) -> set[str]:
        logger.info("push (PUSH_PROVIDER=log) to %d device(s): %s: %s", len(targets), push.title, push.body)
        return set()


class WebhookProvider:
    def __init__(self, settings: Settings, client: httpx.Client) -> None:
        self.url = settings.push_webhook_url
        self.secret = settings.push_webhook_secret
        self.client = client

    def send(self, targets: list[Target], push: Push) -> set[str]:
        headers = {"Authorization": f"Bearer {self.secret}"} if self.secret else {}
        invalid = set()
        for target in targets:
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
            if response.status_code in (404, 410):
                invalid.add(target.token)
                continue
            _raise_for_status(response, "push webhook")
        return invalid


class OneSignalProvider:
    def __init__(self, settings: Settings, client: httpx.Client) -> None:
        self.url = settings.onesignal_api_url.rstrip("/") + "/notifications"
        self.app_id = settings.onesignal_app_id
        self.api_key = settings.onesignal_api_key
        self.client = client

    def send(self, targets: list[Target], push: Push) -> set[str]:
        payload = {
            "app_id": self.app_id,
            "include_player_ids": [t.token for t in targets],
            "headings": {"en": push.title},
            "contents": {"en": push.body},
            "data": push.data,
        }
        try:
            response = self.client.post(self.url, json=payload, headers={"Authorization": f"Basic {self.api_key}"})
        except httpx.TransportError as error:
            raise TransientTaskError(f"OneSignal unreachable: {type(error).__name__}") from None
        _raise_for_status(response, "OneSignal")
        errors = response.json().get("errors") or {}
        return set(errors.get("invalid_player_ids", [])) if isinstance(errors, dict) else set()


def provider_for(settings: Settings, client: httpx.Client) -> PushProvider:
    if settings.push_provider == "webhook":
        return WebhookProvider(settings, client)
    if settings.push_provider == "onesignal":
        return OneSignalProvider(settings, client)
    return LogProvider()

"""The generic webhook: the payload as JSON, signed with ``X-Regwatch-Signature: sha256=<hex
HMAC-SHA256(secret, body)>`` and keyed by ``X-Regwatch-Idempotency-Key``.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import field_validator

from rules.notify.base import Notifier, check_url, secret_from_env, signature


class WebhookTarget(Notifier):
    type: Literal["webhook"] = "webhook"
    url: str
    secret_env: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        return check_url(url, "url")

    def send(self, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, sort_keys=True).encode()
        headers = {"Content-Type": "application/json", "X-Regwatch-Idempotency-Key": payload["key"]}
        if (secret := secret_from_env(self.secret_env)) is not None:
            headers["X-Regwatch-Signature"] = signature(secret, body)
        self._post(self.url, content=body, headers=headers)

"""Notifiers. Built so far: the generic webhook (JSON, HMAC-SHA256 signature, idempotency key).

Payload: ``{"rule", "group", "state", "value", "threshold", "severity", "labels", "since", "at",
"message", "key"}``; headers ``X-Regwatch-Signature: sha256=<hex of HMAC-SHA256(secret, body)>``
and ``X-Regwatch-Idempotency-Key`` (the same for every retry of one notification).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict


class WebhookTarget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["webhook"] = "webhook"
    url: str
    secret_env: str | None = None
    timeout_s: float = 10.0


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class DeliveryFailed(RuntimeError):
    pass


def send_webhook(target: WebhookTarget, payload: dict[str, Any]) -> None:
    body = json.dumps(payload, sort_keys=True).encode()
    headers = {"Content-Type": "application/json", "X-Regwatch-Idempotency-Key": payload["key"]}
    if target.secret_env:
        secret = os.environ.get(target.secret_env, "")
        if not secret:
            raise DeliveryFailed(f"no secret in {target.secret_env}")
        headers["X-Regwatch-Signature"] = signature(secret, body)
    try:
        response = httpx.post(target.url, content=body, headers=headers, timeout=target.timeout_s)
    except httpx.HTTPError as exc:
        raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from None
    if response.status_code >= 300:
        raise DeliveryFailed(f"HTTP {response.status_code}")

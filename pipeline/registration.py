"""Registering the audit receiver with MLflow: the webhook for every model-registry event."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# MLflow refuses plain-http and private-address receivers unless its server allows them.
_HINT = ("MLflow refuses plain-http or private-address receivers by default: start the MLflow server with "
         "MLFLOW_WEBHOOK_ALLOWED_SCHEMES=http,https and/or MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true, or put the "
         "receiver behind https on a public address")


class RegistrationError(RuntimeError):
    """MLflow refused the webhook or its test delivery; the message says what to change."""


@dataclass(frozen=True)
class Registered:
    webhook_id: str
    url: str
    verb: str  # "created" or "updated"
    test_status: int | None


def receiver_url(url: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith("/mlflow/webhook") else url + "/mlflow/webhook"


def register(mlflow_url: str, url: str, name: str, secret: str, events: Sequence[str]) -> Registered:
    """Create or update the webhook named ``name`` for ``events`` (the audit format's registry events),
    then have MLflow test it."""
    try:
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException
    except ImportError:
        raise RegistrationError("mlflow is not installed: pip install 'regwatch[demo]'") from None
    client = MlflowClient(mlflow_url)
    wanted: list[Any] = list(events)  # MLflow types them as its own literals
    url = receiver_url(url)
    try:
        existing = [w for w in client.list_webhooks() if w.name == name]
        if existing:
            webhook = client.update_webhook(existing[0].webhook_id, url=url, events=wanted,
                                            secret=secret, status="ACTIVE")
            verb = "updated"
        else:
            webhook = client.create_webhook(name=name, url=url, events=wanted,
                                            secret=secret, description="regwatch audit trail")
            verb = "created"
        result = client.test_webhook(webhook.webhook_id)
    except MlflowException as exc:
        refused = getattr(exc, "error_code", "") in ("INVALID_PARAMETER_VALUE", "PERMISSION_DENIED")
        raise RegistrationError(f"MLflow refused the webhook: {exc}" + (f" -- {_HINT}" if refused else "")) from None
    if not result.success:
        raise RegistrationError(f"MLflow's test delivery failed: status={result.response_status} "
                                f"error={result.error_message} ({_HINT})")
    return Registered(webhook.webhook_id, url, verb, result.response_status)

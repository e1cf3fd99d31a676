"""Registering the audit receiver with MLflow: the webhook for every model-registry event.

MLflow stores each webhook's secret encrypted with ``MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY`` and,
when the variable is unset, with a key it makes up per process (``EncryptedString`` in
``mlflow/store/model_registry/dbmodels/models.py``). After a restart it can no longer read any
webhook it stored: every delivery fails (``InvalidToken`` in MLflow's own log only) and listing,
updating, testing or deleting a webhook answers 500 with an empty message. ``register`` recognises
that answer and says the cause and the way back instead of "MLflow refused the webhook".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# MLflow refuses plain-http and private-address receivers unless its server allows them.
_HINT = ("MLflow refuses plain-http or private-address receivers by default: start the MLflow server with "
         "MLFLOW_WEBHOOK_ALLOWED_SCHEMES=http,https and/or MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true, or put the "
         "receiver behind https on a public address")


ENCRYPTION_KEY_ENV = "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY"
# A Fernet key (32 random bytes, url-safe base64): what MLflow's variable must hold.
MAKE_KEY = 'python -c "import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())"'


def unreadable_hint(name: str) -> str:
    """The cause of MLflow's 500 on its stored webhooks, and the way back."""
    return (f"MLflow cannot read the webhooks it has stored (500 with an empty message on listing them, while its "
            f"registry answers): it encrypts each webhook's secret with {ENCRYPTION_KEY_ENV} and, with the variable "
            "unset, with a key that dies with the process, so since its last restart (or a change of the key) "
            "every delivery has failed (the audit trail has stopped) and it can neither update, test nor delete "
            f"the webhook. To recover: (1) set {ENCRYPTION_KEY_ENV} in the MLflow server's environment to a fixed "
            f"key (make one with: {MAKE_KEY}; keep it like a password) and restart MLflow; (2) remove the webhooks "
            "stored under the lost key, which no key can read and MLflow's API cannot delete, from MLflow's backend "
            f"store: DELETE FROM webhooks WHERE name = '{name}'; (and any other webhook created before the key was "
            "set); (3) run this command again: it creates the webhook anew (docs/audit-receiver.md, \"MLflow's key "
            "for webhook secrets\")")


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
        if getattr(exc, "error_code", "") == "INTERNAL_ERROR" and stored_webhooks_unreadable(mlflow_url):
            raise RegistrationError(unreadable_hint(name)) from None
        refused = getattr(exc, "error_code", "") in ("INVALID_PARAMETER_VALUE", "PERMISSION_DENIED")
        raise RegistrationError(f"MLflow refused the webhook: {exc}" + (f" -- {_HINT}" if refused else "")) from None
    if not result.success:
        raise RegistrationError(f"MLflow's test delivery failed: status={result.response_status} "
                                f"error={result.error_message} ({_HINT})")
    return Registered(webhook.webhook_id, url, verb, result.response_status)


def stored_webhooks_unreadable(mlflow_url: str) -> bool:
    """Whether MLflow answers 500 to listing its webhooks with the empty message of a secret it
    cannot decrypt (Fernet's ``InvalidToken`` has none) while its registry answers a search: the
    client's own error says only "too many 500 error responses", so ask once more, without retries,
    with the client's credentials and TLS settings."""
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    creds = get_default_host_creds(mlflow_url)
    try:
        listing = http_request(creds, "/api/2.0/mlflow/webhooks", "GET", max_retries=0, raise_on_status=False)
        search = http_request(creds, "/api/2.0/mlflow/registered-models/search", "GET", max_retries=0,
                              raise_on_status=False, params={"max_results": 1})
    except Exception:  # noqa: BLE001 - unreachable now: not this cause
        return False
    if listing.status_code != 500 or search.status_code != 200:
        return False
    try:
        body = listing.json()
    except ValueError:
        return False
    message = str(body.get("message", "")) if isinstance(body, dict) else ""
    return (isinstance(body, dict) and body.get("error_code") == "INTERNAL_ERROR"
            and (not message.strip() or "InvalidToken" in message or "decrypt" in message.lower()))

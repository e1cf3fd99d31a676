"""MLflow webhook deliveries as canonical audit records (``format: audit``).

MLflow 3 announces registry writes as ``{"entity", "action", "timestamp", "data"[, "workspace"]}``
(``mlflow/webhooks/types.py``); the events it defines for the model registry are
``registered_model.created``, ``model_version.created``, ``model_version_tag.set`` / ``.deleted``
and ``model_version_alias.created`` / ``.deleted``. Deletes of models and versions, renames and
stage transitions are not announced by MLflow: the access log still sees them.

MLflow's test delivery (``MlflowClient.test_webhook``, which ``regwatch audit-receiver register``
calls) is signed and shaped like any other and carries no header of its own: it sends the example
payload of the webhook's first event (``mlflow/webhooks/delivery.py`` ``test_webhook``, the
``example()`` of each payload in ``mlflow/webhooks/types.py``: a model named ``example_model``).
It is known by that payload, whole, and yields no record: it is not a registry event.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contract.validation import first_problem
from parsers.errors import ParseError

RegistryEvent = Literal[
    "registered_model.created",
    "model_version.created",
    "model_version_tag.set",
    "model_version_tag.deleted",
    "model_version_alias.created",
    "model_version_alias.deleted",
]
REGISTRY_EVENTS: tuple[RegistryEvent, ...] = get_args(RegistryEvent)


# (entity, action) -> the data MLflow's test delivery sends for it (mlflow/webhooks/types.py, MLflow 3.17).
_EXAMPLE = {"name": "example_model"}
_EXAMPLE_TAGS = {"example_key": "example_value"}
TEST_PAYLOADS: dict[tuple[str, str], dict[str, Any]] = {
    ("registered_model", "created"): {**_EXAMPLE, "tags": _EXAMPLE_TAGS, "description": "An example registered model"},
    ("model_version", "created"): {**_EXAMPLE, "version": "1", "source": "models:/123", "run_id": "abcd1234abcd5678",
                                   "tags": _EXAMPLE_TAGS, "description": "An example model version"},
    ("model_version_tag", "set"): {**_EXAMPLE, "version": "1", "key": "example_key", "value": "example_value"},
    ("model_version_tag", "deleted"): {**_EXAMPLE, "version": "1", "key": "example_key"},
    ("model_version_alias", "created"): {**_EXAMPLE, "alias": "example_alias", "version": "1"},
    ("model_version_alias", "deleted"): {**_EXAMPLE, "alias": "example_alias"},
}


class WebhookDelivery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    entity: str = Field(min_length=1)
    action: str = Field(min_length=1)
    timestamp: str
    data: dict[str, Any] = Field(default_factory=dict)
    workspace: str | None = None


def is_test_delivery(delivery: WebhookDelivery) -> bool:
    """MLflow's test delivery: the example payload of its event, exactly."""
    return TEST_PAYLOADS.get((delivery.entity, delivery.action)) == delivery.data


def canonical_record(body: bytes, delivery_id: str) -> dict[str, Any] | None:
    """The canonical audit record of one delivery; None for MLflow's test delivery (nothing to
    write); ParseError when the body is not a delivery."""
    try:
        delivery = WebhookDelivery.model_validate_json(body)
    except ValidationError as exc:
        raise ParseError(f"not an MLflow webhook delivery: {first_problem(exc)}", "invalid_delivery") from None
    if is_test_delivery(delivery):
        return None
    data = delivery.data
    model: dict[str, str] = {}
    for key in ("name", "version", "alias"):
        value = data.get(key)
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            model[key] = str(value)
    record: dict[str, Any] = {
        "@timestamp": delivery.timestamp,
        "platform": "mlflow",
        "entity": delivery.entity,
        "action": delivery.action,
        "delivery_id": delivery_id,
        "model": model,
    }
    if delivery.entity.endswith("_tag") and isinstance(data.get("key"), str):
        value = data.get("value")
        record["tags"] = {data["key"]: value if isinstance(value, str) else ""}
    elif isinstance(data.get("tags"), dict) and data["tags"]:
        record["tags"] = {str(k): str(v) for k, v in data["tags"].items()}
    if delivery.workspace:
        record["workspace"] = delivery.workspace
    return record

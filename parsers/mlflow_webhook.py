"""MLflow webhook deliveries as canonical audit records (``format: audit``).

MLflow 3 announces registry writes as ``{"entity", "action", "timestamp", "data"[, "workspace"]}``
(``mlflow/webhooks/types.py``); the events it defines for the model registry are
``registered_model.created``, ``model_version.created``, ``model_version_tag.set`` / ``.deleted``
and ``model_version_alias.created`` / ``.deleted``. Deletes of models and versions, renames and
stage transitions are not announced by MLflow: the access log still sees them.
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


class WebhookDelivery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    entity: str = Field(min_length=1)
    action: str = Field(min_length=1)
    timestamp: str
    data: dict[str, Any] = Field(default_factory=dict)
    workspace: str | None = None


def canonical_record(body: bytes, delivery_id: str) -> dict[str, Any]:
    """The canonical audit record of one delivery; ParseError when the body is not one."""
    try:
        delivery = WebhookDelivery.model_validate_json(body)
    except ValidationError as exc:
        raise ParseError(f"not an MLflow webhook delivery: {first_problem(exc)}", "invalid_delivery") from None
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

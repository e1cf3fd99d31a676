"""``examples/regwatch.yaml`` lists every key of the configuration model.

The README sends users to it for "every key"; it lacked nine. The model is walked recursively
(nested settings, lists of inputs and probe targets, optional sub-settings), so a key added to
the model without its line in the example fails here.
"""

from __future__ import annotations

import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from regwatch.config import Config, load_config

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "regwatch.yaml"
RULES = "rules."


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The settings models a field holds: itself, or inside list[...], dict[...], X | None, unions."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in typing.get_args(annotation) for model in _models(arg)]


def model_keys(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    for name, field in model.model_fields.items():
        key = prefix + (field.alias or name)
        yield key
        is_mapping = typing.get_origin(field.annotation) is dict
        for sub in _models(field.annotation):
            if not is_mapping:  # dict[str, Model]: names are the user's (rules.notifiers.<name>)
                yield from model_keys(sub, key + ".")


def example_keys(node: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield prefix + str(key)
            yield from example_keys(value, f"{prefix}{key}.")
    elif isinstance(node, list):
        for item in node:
            yield from example_keys(item, prefix)


def test_every_key_of_the_configuration_model_is_in_the_example() -> None:
    shown = set(example_keys(yaml.safe_load(EXAMPLE.read_text())))
    missing = sorted(key for key in model_keys(Config) if key not in shown)
    assert missing == [], f"examples/regwatch.yaml lacks {missing}"


def test_the_example_names_no_key_the_model_does_not_know_and_loads() -> None:
    known = set(model_keys(Config))
    shown = set(example_keys(yaml.safe_load(EXAMPLE.read_text())))
    notifiers = RULES + "notifiers."
    assert sorted(k for k in shown - known if not k.startswith(notifiers)) == []
    config = load_config(EXAMPLE)
    assert config.inputs and config.probe.targets[0].transaction is not None


def test_the_walk_sees_nested_lists_and_optional_settings() -> None:
    keys = set(model_keys(Config))
    for key in ("elasticsearch.api_key_file", "inputs.follow_symlinks", "probe.targets.transaction.model",
                "probe.resources.pid_file", "batch.max_wait_s", "stop_grace_s", "rules.kibana_url"):
        assert key in keys
    assert not any(k.startswith("rules.notifiers.") for k in keys)

"""A synthetic registry transaction: the steps of ``transactions/<kind>.yaml``, each timed.

The steps are data, so another registry is a YAML file, not code. A step that fails ends the
transaction (the next ones would only fail for the same reason); each step run is one result.

A ``capture`` is a dotted path into the answer (``model_versions.0.version``); ``*`` stands for
every item of a list, and ``max:`` in front keeps the greatest of what the path finds (version
numbers compared as numbers): ``max:model_versions.*.version`` is the newest version, whatever
order the registry lists them in (MLflow's ``get-latest-versions`` lists one per stage, an
archived one first as often as not).
"""

from __future__ import annotations

import re
import threading
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import Field

from contract.validation import StrictModel
from contract.yamlfile import load_yaml
from pipeline.probe.check import Answer, CheckResult, timed_request
from pipeline.probe.settings import TargetSettings

_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


class Step(StrictModel):
    name: str
    method: str = "GET"
    path: str
    params: dict[str, str] = Field(default_factory=dict)
    json_body: dict[str, Any] | None = Field(None, alias="json")
    expect: str | None = None
    capture: dict[str, str] = Field(default_factory=dict)


class Transaction(StrictModel):
    steps: list[Step]


@cache
def transaction(kind: str) -> Transaction:
    path = resources.files("pipeline.probe").joinpath(f"transactions/{kind}.yaml")
    if not path.is_file():
        raise ValueError(f"no synthetic transaction {kind!r}")
    return Transaction.model_validate(load_yaml(str(path)))


def _fill(value: Any, variables: dict[str, str]) -> Any:
    if isinstance(value, str):
        return _PLACEHOLDER.sub(lambda m: variables.get(m.group(1), m.group(0)), value)
    if isinstance(value, dict):
        return {k: _fill(v, variables) for k, v in value.items()}
    return value


def _dig_all(body: Any, parts: list[str]) -> list[Any]:
    """Every value at the path (``*`` fans out over a list)."""
    if not parts:
        return [] if body is None else [body]
    part, rest = parts[0], parts[1:]
    if part == "*":
        return [found for item in body for found in _dig_all(item, rest)] if isinstance(body, list) else []
    if isinstance(body, list) and part.isdigit() and int(part) < len(body):
        return _dig_all(body[int(part)], rest)
    if isinstance(body, dict) and part in body:
        return _dig_all(body[part], rest)
    return []


def _order(value: Any) -> tuple[int, float, str]:
    """Numbers (and numeric strings, as MLflow's versions are) by value, before other text."""
    text = str(value)
    try:
        return (1, float(text), text)
    except ValueError:
        return (0, 0.0, text)


def _dig(body: Any, path: str) -> Any:
    """The value at ``path`` (the first, when ``*`` finds several), or with ``max:`` the greatest."""
    newest = path.startswith("max:")
    found = _dig_all(body, path.removeprefix("max:").split("."))
    if not found:
        return None
    return max(found, key=_order) if newest else found[0]


def run_transaction(client: httpx.Client, target: TargetSettings, stop: threading.Event | None = None,
                    headers: dict[str, str] | None = None) -> list[CheckResult]:
    """Each step a request bounded like the health check (``timeout_s``, ``max_body_bytes``)."""
    spec = target.transaction
    if headers is None:
        headers = target.headers()
    assert spec is not None
    parts = urlsplit(target.url)
    base = (spec.base_url or f"{parts.scheme}://{parts.netloc}").rstrip("/")
    variables = {"model": spec.model}
    results = []
    for step in transaction(spec.kind).steps:
        def judge(answer: Answer, step: Step = step) -> str | None:
            if step.expect is None:
                return None
            try:
                body = answer.json()
            except ValueError:
                return "the answer is not JSON"
            return None if _dig(body, step.expect) is not None else f"no {step.expect!r} in the answer"

        result = timed_request(client, step.method, base + step.path, target=target.name,
                               environment=target.environment, step=step.name, expected_status=[200], judge=judge,
                               params=_fill(step.params, variables) or None,
                               json=_fill(step.json_body, variables) if step.json_body is not None else None,
                               headers=headers, timeout_s=target.timeout_s, max_body_bytes=target.max_body_bytes,
                               stop=stop)
        results.append(result)
        if not result.up:
            break
        for name, dotted in step.capture.items():
            value = _dig(result.body, dotted)
            if value is not None:
                variables[name] = str(value)
    return results

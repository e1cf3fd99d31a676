"""A synthetic registry transaction: the steps of ``transactions/<kind>.yaml``, each timed.

The steps are data, so another registry is a YAML file, not code. A step that fails ends the
transaction (the next ones would only fail for the same reason); each step run is one result.
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


def _dig(body: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if isinstance(body, list) and part.isdigit() and int(part) < len(body):
            body = body[int(part)]
        elif isinstance(body, dict) and part in body:
            body = body[part]
        else:
            return None
    return body


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

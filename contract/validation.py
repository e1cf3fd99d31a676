"""Validation at the boundaries, the one way: a strict base model and one error formatter.

Every model read from a file or a request (configuration, rules, route tables, notifiers, audit
records) forbids unknown keys and is frozen; its errors are told as ``key.path: message``, without
the offending value (a value may be a secret).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, ValidationError


class StrictModel(BaseModel):
    """Unknown keys are errors, values do not change once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def location(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top)"


def problems(exc: ValidationError, separator: str = "; ") -> str:
    """Every error: ``inputs.0.format: Input should be ...; metrics_port: ...``."""
    return separator.join(f"{location(err['loc'])}: {err['msg']}" for err in exc.errors())


def first_problem(exc: ValidationError) -> str:
    """The first error only: what a dead-letter's one-line reason says."""
    first = exc.errors()[0]
    return f"{location(first['loc'])}: {first['msg']}"

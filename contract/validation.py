"""Validation at the boundaries, the one way: a strict base model and one error formatter.

Every model read from a file or a request (configuration, rules, route tables, notifiers, audit
records) forbids unknown keys and is frozen; its errors are told as ``key.path: message``, without
the offending value (a value may be a secret).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError


class StrictModel(BaseModel):
    """Unknown keys are errors, values do not change once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)


_VALUE_ERROR = "Value error, "


def _whole_number(value: object) -> object:
    """YAML reads ``true`` as a boolean and pydantic would take it as 1, and ``80.0`` or ``"80"``
    as 80: a port given so is a mistake to name, not a number to guess."""
    if value.__class__ is not int:
        raise ValueError("a port is a whole number from 1 to 65535")
    return value


Port = Annotated[int, BeforeValidator(_whole_number), Field(ge=1, le=65535)]
"""A TCP port of a configuration: a whole number, never a boolean, a float or text."""


def location(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top)"


def message(err: Mapping[str, Any]) -> str:
    """One error's words: a check of ours says its own (pydantic puts ``Value error, `` before
    them, which tells the reader nothing)."""
    text = str(err["msg"])
    return text.removeprefix(_VALUE_ERROR) if err.get("type") == "value_error" else text


def problems(exc: ValidationError, separator: str = "; ") -> str:
    """Every error: ``inputs.0.format: Input should be ...; metrics_port: ...``."""
    return separator.join(f"{location(err['loc'])}: {message(err)}" for err in exc.errors())


def first_problem(exc: ValidationError) -> str:
    """The first error only: what a dead-letter's one-line reason says."""
    first = exc.errors()[0]
    return f"{location(first['loc'])}: {message(first)}"

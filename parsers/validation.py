"""Validation at the boundaries, the one way: a strict base model and one error formatter.

Every model read from a file or a request (configuration, rules, route tables, notifiers, audit
records) forbids unknown keys and is frozen; its errors are told as ``key.path: message``, without
the offending value (a value may be a secret).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

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


class SecretError(ValueError):
    """A secret the environment should hold is missing or unusable; the message names the
    variable, never its value."""


def secret_from_env(name: str, environ: Mapping[str, str] | None = None) -> str:
    """The value of environment variable ``name``, surrounding white space dropped.

    Kubernetes secret files and ``echo >> EnvironmentFile`` leave a trailing newline; sent as is,
    HTTP libraries refuse the header and quote the value in their error, which then reaches logs,
    documents and plugin lines. So white space around the value is dropped, and a value that still
    holds a control character, or no value at all, is refused here, naming only the variable."""
    value = (os.environ if environ is None else environ).get(name)
    if value is None or not value.strip():
        raise SecretError(f"environment variable {name} is not set or empty")
    value = value.strip()
    if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in value):
        raise SecretError(f"environment variable {name} holds a control character")
    return value


def redact_userinfo(url: str) -> str:
    """``https://user:secret@host/p`` -> ``https://host/p``: a URL that is stored or printed never
    carries credentials (a user name can be a token too)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    cut = len(rest)
    for mark in "/?#":
        at = rest.find(mark)
        if at != -1:
            cut = min(cut, at)
    authority, tail = rest[:cut], rest[cut:]
    if "@" not in authority:
        return url
    return f"{scheme}://{authority.rpartition('@')[2]}{tail}"

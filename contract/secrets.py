"""Secrets at the boundaries: read from the environment only, never printed, never stored.

A secret named in a file would end up in backups and ``ps``; one printed in an error would end up
in logs and alert documents. So every room reads its secrets here, and every URL it stores or
prints loses its credentials here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping


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


def redact_userinfo(url: str, keep_user: bool = False) -> str:
    """``https://user:secret@host/p`` -> ``https://host/p``: a URL that is stored or sent on never
    carries credentials (a user name can be a token too). ``keep_user`` gives
    ``https://user:***@host/p``, for the operator's own terminal, where the user name tells which
    account is configured."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    cut = len(rest)
    for mark in "/?#":
        at = rest.find(mark)
        if at != -1:
            cut = min(cut, at)
    authority, tail = rest[:cut], rest[cut:]
    userinfo, sign, host = authority.rpartition("@")
    if not sign:
        return url
    if keep_user:
        return f"{scheme}://{userinfo.partition(':')[0]}:***@{host}{tail}"
    return f"{scheme}://{host}{tail}"

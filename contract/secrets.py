"""Secrets at the boundaries: read from the environment only, never printed, never stored.

A secret named in a file would end up in backups and ``ps``; one printed in an error would end up
in logs and alert documents. So every room reads its secrets here, every URL it stores or
prints loses its credentials here, and every text that may quote a request back (an answer, an
HTTP library's error) loses the request's secrets here: the probe's messages and the notifiers'
errors mask the same forms of the same secrets.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable, Mapping
from urllib.parse import unquote, urlsplit


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


MASK = "***"
SHORTEST_HEADER_SECRET = 4  # a shorter header value or fragment is masked nowhere (see request_secrets)


def request_secrets(url: str, headers: Mapping[str, str] | None = None, auth: tuple[str, str] | None = None,
                    extra: Iterable[str] = ()) -> list[str]:
    """Every form in which a request's secrets can come back quoted in an answer or an error.

    A server that refuses a request often quotes it back. So each header value is a secret, and so
    is the credential after its scheme word (``Bearer T``, ``GenieKey K``: a receiver may quote the
    token alone); a header value or fragment shorter than :data:`SHORTEST_HEADER_SECRET` is not
    (``X-Retry: 1`` would blank out every ``1`` of the message). Basic credentials, from ``auth``
    or the URL's ``user:password``, are quoted as the password, the pair, or the pair in base64
    as the ``Authorization`` header carries it: each form is a secret, whatever its length.
    ``extra``: secrets of the body, passed through."""
    found = [secret for secret in extra if secret]
    for value in (headers or {}).values():
        value = str(value)
        found += [part for part in (value, *value.split()[1:]) if len(part) >= SHORTEST_HEADER_SECRET]
    pairs = [(str(auth[0]), str(auth[1]))] if auth else []
    if (pair := _url_credentials(url)) is not None:
        pairs.append(pair)
    for user, password in pairs:
        joined = f"{user}:{password}"
        found += [secret for secret in (password, joined, base64.b64encode(joined.encode()).decode()) if secret]
    return found


def _url_credentials(url: str) -> tuple[str, str] | None:
    """The user and password of a URL's user information, decoded as an HTTP client sends them."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if not parts.username and not parts.password:  # none, or an empty ``@``
        return None
    return unquote(parts.username or ""), unquote(parts.password or "")


def mask_secrets(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced by ``***``, the longest first: one secret may hold
    another (``Bearer T`` holds ``T``), and masking the shorter first would leave the rest of the
    longer one in the text."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text

"""The secret maskers of the ground floor, which the probe and the notifiers share.

A URL printed or stored loses its credentials (``redact_userinfo``); an error text that may quote
a request back loses every form of the request's secrets (``request_secrets``, ``mask_secrets``).
The callers' end-to-end behaviour is pinned in test_probe_hang, test_notifiers and
test_delivery_hang; here each function is held to its word without a server.
"""

from __future__ import annotations

import base64

import pytest

from contract.secrets import mask_secrets, redact_userinfo, request_secrets


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize("url, dropped, kept", [
    ("https://user:pw@host/p", "https://host/p", "https://user:***@host/p"),
    ("https://user:pw@host:9200", "https://host:9200", "https://user:***@host:9200"),
    ("https://token@host/p", "https://host/p", "https://token:***@host/p"),
    # the authority ends at ``?`` or ``#`` too: an ``@`` after it is the query's or the fragment's
    ("https://user:pw@host?next=a@b", "https://host?next=a@b", "https://user:***@host?next=a@b"),
    ("https://user:pw@host#who@where", "https://host#who@where", "https://user:***@host#who@where"),
    ("https://user:pw@host/p?q=1#f@g", "https://host/p?q=1#f@g", "https://user:***@host/p?q=1#f@g"),
    # a password holding ``@`` (unencoded): the last ``@`` of the authority ends the user information
    ("https://user:p@ss@host/p", "https://host/p", "https://user:***@host/p"),
])
def test_redact_userinfo_drops_or_masks_the_credentials_only(url: str, dropped: str, kept: str) -> None:
    assert redact_userinfo(url) == dropped
    assert redact_userinfo(url, keep_user=True) == kept


@pytest.mark.parametrize("url", [
    "https://host/p?who=a@b", "https://host?who=a@b", "https://host#a:b@c", "host:9200", "mailto:a@b",
])
def test_redact_userinfo_leaves_a_url_without_credentials_as_it_is(url: str) -> None:
    assert redact_userinfo(url) == url
    assert redact_userinfo(url, keep_user=True) == url


def test_request_secrets_gives_each_header_value_and_the_credential_after_its_scheme_word() -> None:
    secrets = request_secrets("https://host/p", {"Authorization": "Bearer s3cret-token", "X-Key": "k3y-value"})
    assert set(secrets) == {"Bearer s3cret-token", "s3cret-token", "k3y-value"}


def test_request_secrets_skips_a_short_header_value_or_fragment() -> None:
    """``X-Retry: 1`` would blank out every ``1`` of a message."""
    assert request_secrets("https://host/p", {"X-Retry": "1", "Authorization": "Key abc"}) == ["Key abc"]


def test_request_secrets_gives_every_form_of_basic_credentials() -> None:
    from_auth = request_secrets("https://host/p", auth=("AC1", "pw"))
    assert set(from_auth) == {"pw", "AC1:pw", b64("AC1:pw")}  # a short password is a secret still
    # the URL's user information, percent-decoded as the client sends it in the Authorization header
    from_url = request_secrets("https://hook%40user:web%3Ahook@host/p")
    assert set(from_url) == {"web:hook", "hook@user:web:hook", b64("hook@user:web:hook")}
    # a user name alone (a token as user name): the client sends ``token:``
    assert set(request_secrets("https://tok3n@host/p")) == {"tok3n:", b64("tok3n:")}


@pytest.mark.parametrize("url", ["https://host/p", "https://@host/p", "https://host/p?u=a:b@c", "http://[::1/p",
                                 "not a url"])
def test_request_secrets_finds_no_credentials_where_a_url_has_none(url: str) -> None:
    assert request_secrets(url) == []


def test_request_secrets_passes_the_body_secrets_through() -> None:
    assert request_secrets("https://host/p", extra=("routing-key", "")) == ["routing-key"]


def test_mask_secrets_masks_the_longest_first() -> None:
    """Masking ``T`` before ``Bearer T`` would leave ``Bearer ***`` where the whole value was."""
    text = "you sent Authorization: Bearer s3cret, and s3cret again"
    assert mask_secrets(text, ["s3cret", "Bearer s3cret"]) == "you sent Authorization: ***, and *** again"


def test_mask_secrets_ignores_an_empty_secret_and_keeps_text_without_any() -> None:
    assert mask_secrets("nothing to hide", ["", "absent"]) == "nothing to hide"
    assert mask_secrets("nothing to hide", []) == "nothing to hide"


def test_what_request_secrets_finds_mask_secrets_hides_in_every_form() -> None:
    """The two together, as the probe and the notifiers use them: an answer quoting the request
    back (header, token alone, Basic header, password alone) keeps none of it."""
    url = "https://probe:pa55word@host/health"
    headers = {"Authorization": "Bearer s3cret-token"}
    answer = (f"GET /health Authorization: Bearer s3cret-token; token s3cret-token; "
              f"Authorization: Basic {b64('probe:pa55word')}; password pa55word")
    masked = mask_secrets(answer, request_secrets(url, headers))
    assert masked == "GET /health Authorization: ***; token ***; Authorization: Basic ***; password ***"

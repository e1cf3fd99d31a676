"""Links in notifications open the Kibana space the objects were imported into.

A space is part of Kibana's base URL (``/s/<space>``), so ``rules.kibana_url:
https://kibana:5601/s/team-a`` is how a runner's links follow ``regwatch kibana import --space
team-a``; a page copied from the browser as the base keeps its space too.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import pytest

from rules.compose import Composer
from rules.cycle import Known
from rules.links import discover_url, kibana_app_url
from rules.query import Window
from support.rules import T0, write_rules

RULE = ("rules:\n  - {name: slow, type: threshold, kinds: [error], group_by: user.name, notify: [],"
        " condition: {op: '>', value: 0}}\n")


def a_rule(tmp_path):
    return write_rules(tmp_path, RULE)[0]


@pytest.mark.parametrize("base", [
    "https://kibana.example:5601/s/team-a",
    "https://kibana.example:5601/s/team-a/",
    "https://kibana.example:5601/s/team-a/app/home#/",  # a page copied from the browser
    "https://kibana.example:5601/s/team-a/app/discover#/?_g=(time:(from:now-15m,to:now))",
])
def test_a_discover_link_opens_the_space_named_in_the_kibana_url(base: str, tmp_path) -> None:
    link = discover_url(base, a_rule(tmp_path), T0, T0 + 60, "carol")
    parts = urlsplit(link)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "kibana.example:5601", "/s/team-a/app/discover")
    assert parts.fragment.startswith("/?_g=(time:(from:") and link.count("#") == 1
    state = unquote(parts.fragment)
    assert "dataSource:(dataViewId:regwatch-error,type:dataView)" in state
    assert "user.name:carol" in state


def test_without_a_space_the_link_is_the_default_space(tmp_path) -> None:
    assert kibana_app_url("https://k.example", "discover") == "https://k.example/app/discover"
    # server.basePath: kept
    assert kibana_app_url("https://k.example/kibana/", "discover") == "https://k.example/kibana/app/discover"
    assert urlsplit(discover_url("https://k.example/", a_rule(tmp_path), T0, T0 + 60, "x")).path == "/app/discover"


def test_the_dashboard_link_of_a_notification_opens_the_same_space(tmp_path) -> None:
    composer = Composer(None, "default", "regwatch-state", Known(),  # type: ignore[arg-type]
                        kibana_url="https://kibana.example/s/team-a/app/home#/")
    entry = composer.entry(a_rule(tmp_path), "carol", "firing", 3.0, T0, T0 + 60, Window(T0, T0 + 60),
                           samples=False)
    payload = entry["payload"]
    assert urlsplit(payload["dashboard"]).path == "/s/team-a/app/dashboards"
    assert urlsplit(payload["dashboard"]).fragment.startswith("/view/regwatch-dashboard-alerts?_g=(time:")
    assert urlsplit(payload["discover"]).path == "/s/team-a/app/discover"


def test_kibana_import_trusts_the_private_ca_named_in_kibana_ca_cert(monkeypatch, tmp_path) -> None:
    import httpx

    from kibana import client

    seen: dict = {}

    def post(url, **kwargs):
        seen.update(kwargs, url=url)
        return httpx.Response(200, json={"successResults": []}, request=httpx.Request("POST", url))

    monkeypatch.setattr(client.httpx, "post", post)
    monkeypatch.setenv("KIBANA_CA_CERT", str(tmp_path / "ca.pem"))
    client.import_objects("https://kibana.example", b"", space="team-a")
    assert seen["verify"] == str(tmp_path / "ca.pem")
    assert seen["url"] == "https://kibana.example/s/team-a/api/saved_objects/_import"
    monkeypatch.delenv("KIBANA_CA_CERT")
    client.import_objects("https://kibana.example", b"")
    assert seen["verify"] is True

"""Kibana links in notifications: Discover opened on exactly an alert's window and filter.

Kibana keeps app state in the URL as Rison (``@kbn/kibana-utils-plugin``'s ``setStateToKbnUrl``).
Discover's locator (``src/platform/plugins/shared/discover/common/app_locator_get_location.ts``)
writes the time range to ``_g=(time:(from,to))`` and the data source, query and filters to
``_a=(dataSource:(dataViewId,type:dataView),query:(language,query),filters:!(...))``; a filter
with its own Query DSL is a *custom* filter (``kbn-es-query/src/filters/build_filters/
custom_filter.ts``: ``meta.type: custom`` beside ``query``).

A Kibana space is part of the base URL, as Kibana's own links have it: ``rules.kibana_url:
https://kibana:5601/s/team-a`` links to ``https://kibana:5601/s/team-a/app/discover#/...``, the
space the objects were imported into (``regwatch kibana import --space team-a``).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from contract.timestamps import iso_from_epoch
from contract.views import DATA_VIEWS
from rules.model import RuleBase
from rules.query import group_values, time_range

_ID = re.compile(r"^[^-0-9 '!:(),*@$][^ '!:(),*@$]*$")
# A Kibana page's address pasted as the base: what follows the base (and space) is dropped.
_APP_PATH = re.compile(r"/app(?:/.*)?$")


def kibana_app_url(kibana_url: str, app: str) -> str:
    """``<base>[/s/<space>]/app/<app>``: Kibana's base URL, with its space if it names one.

    The base may be a page copied from the browser (``https://k/s/team-a/app/home#/``): its
    fragment, query and ``/app/...`` are dropped, the space is kept."""
    base = kibana_url.split("#", 1)[0].split("?", 1)[0].rstrip("/")
    return f"{_APP_PATH.sub('', base).rstrip('/')}/app/{app}"


def rison(value: Any) -> str:
    """Rison, the URL-friendly JSON Kibana's state uses (rison-node's encoder rules)."""
    if value is None:
        return "!n"
    if value is True:
        return "!t"
    if value is False:
        return "!f"
    if isinstance(value, (int, float)):
        return repr(value) if isinstance(value, float) and not value.is_integer() else str(int(value))
    if isinstance(value, str):
        if _ID.match(value):
            return value
        return "'" + value.replace("!", "!!").replace("'", "!'") + "'"
    if isinstance(value, dict):
        return "(" + ",".join(f"{rison(str(k))}:{rison(v)}" for k, v in value.items()) + ")"
    if isinstance(value, (list, tuple)):
        return "!(" + ",".join(rison(v) for v in value) + ")"
    return rison(str(value))


def _custom(alias: str, query: dict[str, Any]) -> dict[str, Any]:
    return {"meta": {"alias": alias, "disabled": False, "negate": False, "type": "custom"}, "query": query,
            "$state": {"store": "appState"}}


def data_view_of(rule: RuleBase) -> str | None:
    """The rule's data view: its own, else the shipped view of its one kind, else of all events."""
    if rule.data_view or rule.index is not None:
        return rule.data_view
    view = f"regwatch-{rule.kinds[0]}" if len(rule.kinds) == 1 else "regwatch-events"
    return view if view in DATA_VIEWS else "regwatch-events"


def discover_url(kibana_url: str, rule: RuleBase, start: float, end: float, group: str) -> str:
    """Discover on the rule's data view, its window, its query and the alert's group.

    Data views pick by ``@timestamp``. A window on another time field (``event.ingested``) is a
    filter of its own, exact, and the time picker opens a day wider so late events are in view."""
    data_view = data_view_of(rule)
    app: dict[str, Any] = {}
    if data_view:
        app["dataSource"] = {"dataViewId": data_view, "type": "dataView"}
    filters = []
    if rule.kql:
        app["query"] = {"language": "kuery", "query": rule.kql}
        if rule.filter:
            filters.append(_custom("rule filter", {"query_string": {"query": rule.filter}}))
    elif rule.filter:
        app["query"] = {"language": "lucene", "query": rule.filter}
    if rule.query:
        filters.append(_custom("rule query", rule.query))
    for field, value in rule.terms.items():
        filters.append(_custom(field, {"terms": {field: value}} if isinstance(value, list)
                               else {"term": {field: value}}))
    for field, value in group_values(rule, group).items():
        filters.append(_custom(f"{field}: {value}", {"term": {field: value}}))
    picker_from = start
    if rule.time_field != "@timestamp":
        filters.append(_custom(f"window on {rule.time_field}", time_range(rule, start, end)))
        picker_from = start - 86400
    if filters:
        app["filters"] = filters
    state = {"time": {"from": iso_from_epoch(picker_from), "to": iso_from_epoch(end)}}
    url = f"{kibana_app_url(kibana_url, 'discover')}#/?_g={quote(rison(state), safe=_SAFE)}"
    if app:
        url += f"&_a={quote(rison(app), safe=_SAFE)}"
    return url


_SAFE = "-_.!~*'():,@$/"  # what Kibana's encodeUriQuery leaves as it is (and Rison relies on)

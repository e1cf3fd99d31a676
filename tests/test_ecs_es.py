"""ECS's field types on a real node (#28 item 3): the template the node holds, a 40 KB URL path, and
the streams across the rollover that a changed field type needs.

The local test node (the integ-test zip) lacks the modules of wildcard, match_only_text,
constant_keyword and scaled_float: there the installed template is the degraded form, and these
tests check exactly that; on a full node the same tests check ECS's own types.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from elasticsearch import Elasticsearch

from contract.mappings import mappings
from pipeline import templates
from regwatch.config import load_config
from regwatch.ship import build_shipper
from rules.backtest import read_now
from rules.model import RuleFile
from support.shipping import indexed, line, write_config

REGWATCH = [sys.executable, "-m", "regwatch.cli"]
# The module that brings each type, by its name in GET _nodes/plugins
MODULES = {"wildcard": {"wildcard", "x-pack-wildcard"}, "match_only_text": {"mapper-extras"},
           "scaled_float": {"mapper-extras"}, "constant_keyword": {"constant-keyword", "x-pack-constant-keyword"}}


def _modules(es: Elasticsearch) -> set[str]:
    nodes = es.nodes.info(metric="plugins")["nodes"].values()
    return {module["name"] for node in nodes for module in node.get("modules", [])}


def test_the_installed_template_is_ecs_where_the_node_can_and_degraded_only_where_it_cannot(
        es: Elasticsearch) -> None:
    missing = templates.missing_types(es)
    modules = _modules(es)
    for es_type, providers in MODULES.items():  # missing exactly where no module brings the type
        assert (es_type in missing) == modules.isdisjoint(providers), (es_type, sorted(modules))
    templates.install(es, replicas=0)
    found = es.cluster.get_component_template(name=templates.MAPPINGS_COMPONENT)
    installed = found["component_templates"][0]["component_template"]["template"]["mappings"]
    expected, changed = templates.degrade(mappings(), missing)
    assert installed == expected
    assert all(what.split("->")[0] in missing for what in changed.values())
    assert ("url.path" in changed) == ("wildcard" in missing)


def _ship(es_url: str, namespace: str, tmp_path: Path, log: Path) -> None:
    summary = build_shipper(load_config(write_config(tmp_path / "c.yaml", es_url, namespace, [str(log)]))).run(
        once=True)
    assert not summary.deadletters


def test_a_40_kb_url_path_is_an_event_with_that_field_unindexed_not_a_dead_letter(
        es: Elasticsearch, es_url: str, namespace: str, tmp_path: Path) -> None:
    path = "/api/2.0/mlflow/registered-models/get/" + "p" * 40_000
    log = tmp_path / "access.log"
    log.write_bytes(line(1, path=path) + line(2))
    _ship(es_url, namespace, tmp_path, log)
    assert indexed(es, namespace) == 2 and indexed(es, namespace, "deadletter") == 0
    hits = es.search(index=f"logs-modelregistry.*-{namespace}", query={"match_all": {}}, size=10,
                     sort=[{"log.offset": "asc"}])["hits"]["hits"]
    long_one, short_one = hits
    assert long_one["_source"]["url"]["path"] == path  # kept whole in _source
    assert long_one["_source"]["event"]["action"] == "mlflow-registered-models-get"  # no 40 KB action
    if "wildcard" in templates.missing_types(es):  # a keyword: too long to index, the event stands
        assert long_one["_ignored"] == ["url.path"] and "_ignored" not in short_one
    by_path = es.count(index=f"logs-modelregistry.*-{namespace}",
                       query={"term": {"url.path": "/api/2.0/mlflow/registered-models/get"}})["count"]
    assert by_path == 1


def _count_rule():  # the rules' own query path: every users' event of the last hour, by event.ingested
    (rule,) = RuleFile.model_validate({"rules": [{
        "name": "all-events", "type": "threshold", "window": "1h", "interval": "1m",
        "condition": {"op": ">", "value": 1e9}, "notify": []}]}).rules
    return rule


def test_setup_rolls_over_a_stream_whose_field_types_changed_and_each_event_counts_once(
        es: Elasticsearch, es_url: str, namespace: str, tmp_path: Path) -> None:
    stream = f"logs-modelregistry.retrieval-{namespace}"
    old = templates.node_mappings(es)  # the template before: url.query was text then
    old["properties"]["url"]["properties"]["query"] = {"type": "text"}
    es.indices.put_index_template(name=f"old-{namespace}", index_patterns=[stream], data_stream={}, priority=900,
                                  template={"mappings": old, "settings": {"number_of_replicas": 0}})
    log = tmp_path / "access.log"
    try:
        log.write_bytes(b"".join(line(i) for i in range(5)))
        _ship(es_url, namespace, tmp_path, log)
    finally:
        es.indices.delete_index_template(name=f"old-{namespace}")
    assert indexed(es, namespace, "retrieval") == 5
    try:
        config = write_config(tmp_path / "c.yaml", es_url, namespace, [str(log)])
        done = subprocess.run([*REGWATCH, "setup", "-c", str(config), "--retention", ""], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "rolled over 1 data stream(s) whose field types changed (url.query)" in done.stderr
        lacks = [n for n in done.stderr.splitlines() if n.startswith("note: this node lacks the modules")]
        assert len(lacks) == (1 if templates.missing_types(es) else 0)  # one line, naming what was degraded
        backing = es.indices.resolve_index(name=stream)["data_streams"][0]["backing_indices"]
        assert len(backing) == 2
        assert es.indices.get_mapping(index=backing[-1])[backing[-1]]["mappings"]["properties"]["url"]["properties"][
            "query"]["type"] == "keyword"
        with log.open("ab") as more:
            more.write(b"".join(line(i) for i in range(5, 12)))
        _ship(es_url, namespace, tmp_path, log)
        assert indexed(es, namespace, "retrieval") == 12
        es.indices.refresh(index=f"*-modelregistry.*-{namespace}")
        [reading] = read_now(es, _count_rule(), namespace, time.time() + 1)
        assert reading.value == 12  # 5 before the rollover, 7 after: each once
        # the earlier backing index keeps its url.query text: the others still got every new field
        assert "note: backing indices written before a field's type changed" in done.stderr
        again = subprocess.run([*REGWATCH, "setup", "-c", str(config), "--retention", ""], capture_output=True,
                               text=True, timeout=120)
        assert again.returncode == 0 and "rolled over" not in again.stderr  # nothing changed: no rollover
        assert len(es.indices.resolve_index(name=stream)["data_streams"][0]["backing_indices"]) == 2
    finally:  # the backing index before the rollover (url.query text) leaves the shared node with the test
        for index in es.indices.resolve_index(name=stream)["data_streams"][0]["backing_indices"][:-1]:
            es.indices.delete(index=index)

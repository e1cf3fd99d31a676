"""Kibana saved objects, checked without Kibana: structure offline, every query on a real node."""

from __future__ import annotations

import email.parser
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from kibana.objects import DATA_VIEWS, NDJSON, all_visualizations, es_request, fields_used, render

SAMPLES = Path(__file__).parent / "samples"
AGGREGATABLE = {"keyword", "long", "integer", "short", "byte", "double", "float", "date", "ip", "boolean"}


def objects() -> list[dict]:
    return [json.loads(line) for line in NDJSON.read_text().splitlines()]


def test_committed_ndjson_is_the_generator_output() -> None:
    assert NDJSON.read_text() == render(), "run: python -m kibana.objects"


def test_structure_ids_and_references() -> None:
    objs = objects()
    ids = [(o["type"], o["id"]) for o in objs]
    assert len(ids) == len(set(ids))
    by_key = set(ids)
    for obj in objs:
        assert set(obj) == {"id", "type", "attributes", "references"}
        for ref in obj["references"]:
            assert (ref["type"], ref["id"]) in by_key, f"{obj['id']} references missing {ref}"
    dashboards = [o for o in objs if o["type"] == "dashboard"]
    assert {d["attributes"]["title"] for d in dashboards} == {"Model Registry Overview", "Model activity", "Alerts"}
    for dashboard in dashboards:
        panels = json.loads(dashboard["attributes"]["panelsJSON"])
        names = {r["name"]: r for r in dashboard["references"]}
        for panel in panels:
            if "panelRefName" in panel:
                assert names[panel["panelRefName"]]["type"] == "lens"
            else:  # by-value markdown help panel
                assert panel["embeddableConfig"]["savedVis"]["type"] == "markdown"
        assert any("panelRefName" not in p for p in panels), "each dashboard explains itself"
    model = next(d for d in dashboards if d["attributes"]["title"] == "Model activity")
    controls = json.loads(model["attributes"]["controlGroupInput"]["panelsJSON"])
    assert controls["model"]["explicitInput"]["fieldName"] == "modelregistry.model.name"
    for lens in (o for o in objs if o["type"] == "lens"):
        layers = lens["attributes"]["state"]["datasourceStates"]["formBased"]["layers"]
        for layer_id, layer in layers.items():
            assert set(layer["columnOrder"]) == set(layer["columns"])
            assert any(r["name"] == f"indexpattern-datasource-layer-{layer_id}" for r in lens["references"])
    searches = {o["attributes"]["title"] for o in objs if o["type"] == "search"}
    assert "regwatch: dead-letters (raw line and reason)" in searches and "regwatch: errors" in searches


def _flatten(properties: dict, prefix: str = "") -> dict[str, str]:
    out = {}
    for name, spec in properties.items():
        path = f"{prefix}{name}"
        if "properties" in spec:
            out.update(_flatten(spec["properties"], path + "."))
        else:
            out[path] = spec.get("type", "object")
            for sub, sub_spec in spec.get("fields", {}).items():
                out[f"{path}.{sub}"] = sub_spec["type"]
    return out


def test_every_field_exists_with_an_aggregatable_type(es: Elasticsearch) -> None:
    mapped: dict[str, dict[str, str]] = {}
    for view, (_, pattern) in DATA_VIEWS.items():
        concrete = pattern.replace("*", "probe-kind" if pattern.endswith(".*") else "probe")
        if concrete.startswith("logs-modelregistry.probe-kind"):
            concrete = "logs-modelregistry.access-probe"
        simulated = es.indices.simulate_index_template(name=concrete)
        mapped[view] = _flatten(simulated["template"]["mappings"]["properties"])
    for vis in all_visualizations():
        for name in fields_used(vis):
            assert name in mapped[vis.view], f"{vis.id}: {name} is not mapped in {vis.view}"
            assert mapped[vis.view][name] in AGGREGATABLE, f"{vis.id}: {name} is {mapped[vis.view][name]}"


def _index_for(view: str, namespace: str) -> str:
    pattern = DATA_VIEWS[view][1]
    return pattern[:-1] + (f"*-{namespace}" if pattern.endswith(".*") else namespace)


def _has_data(response: dict) -> bool:
    aggs = response.get("aggregations")
    if not aggs:
        return response["hits"]["total"]["value"] > 0
    (first,) = aggs.values()
    if "buckets" in first:
        return len(first["buckets"]) > 0
    if "doc_count" in first:
        return first["doc_count"] > 0
    return first.get("value") is not None or bool(first.get("values"))


@pytest.mark.parametrize("vis", all_visualizations(), ids=lambda v: v.id)
def test_every_visualization_query_runs_on_the_real_node(es: Elasticsearch, demo_namespace: str, vis) -> None:
    index = _index_for(vis.view, demo_namespace)
    response = es.search(index=index, allow_no_indices=True, ignore_unavailable=True, **es_request(vis))
    assert not response["timed_out"]
    if vis.may_be_empty:
        assert "Empty is expected" in next(o for o in objects() if o["id"] == vis.id and o["type"] == "lens")["attributes"]["description"]
    else:
        assert _has_data(response), f"{vis.id} is empty on the demo data"


class KibanaStandIn(BaseHTTPRequestHandler):
    """Kibana cannot run here: this answers the import and export APIs in their documented shape,
    to test what `regwatch kibana` sends and how it reports (not Kibana's behaviour)."""

    stored: dict[tuple[str, str], dict] = {}
    seen_headers: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        KibanaStandIn.seen_headers.append({k.lower(): v for k, v in self.headers.items()})
        if self.headers.get("kbn-xsrf") is None:
            return self._send(400, {"error": "missing kbn-xsrf"})
        if self.path.startswith("/s/team/api/saved_objects/_import?overwrite=true"):
            message = email.parser.BytesParser().parsebytes(
                b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + body)
            (part,) = message.get_payload()
            results = []
            for line in part.get_payload(decode=True).decode().splitlines():
                obj = json.loads(line)
                key = (obj["type"], obj["id"])
                results.append({"type": obj["type"], "id": obj["id"], "meta": {},
                                **({"overwrite": True} if key in self.stored else {})})
                self.stored[key] = obj
            return self._send(200, {"success": True, "successCount": len(results), "successResults": results})
        if self.path == "/api/saved_objects/_export":
            wanted = json.loads(body)["objects"]
            lines = [json.dumps(self.stored[(o["type"], o["id"])]) for o in wanted if (o["type"], o["id"]) in self.stored]
            text = "\n".join(lines + [json.dumps({"exportedCount": len(lines), "missingRefCount": 0})])
            return self._send(200, text, "application/ndjson")
        self._send(404, {"error": self.path})

    def _send(self, status: int, payload, content_type: str = "application/json") -> None:
        data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


def test_import_and_export_commands(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), KibanaStandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    env = {**os.environ, "KIBANA_API_KEY": "a2V5OnNlY3JldA=="}
    try:
        first = subprocess.run([sys.executable, "-m", "regwatch.cli", "kibana", "import", "--url", url, "--space", "team"],
                               capture_output=True, text=True, env=env, check=True)
        assert f"created={len(objects())} updated=0 failed=0" in first.stdout
        second = subprocess.run([sys.executable, "-m", "regwatch.cli", "kibana", "import", "--url", url, "--space", "team"],
                                capture_output=True, text=True, env=env, check=True)
        assert f"created=0 updated={len(objects())} failed=0" in second.stdout
        assert KibanaStandIn.seen_headers[0]["authorization"] == "ApiKey a2V5OnNlY3JldA=="
        out = tmp_path / "export.ndjson"
        subprocess.run([sys.executable, "-m", "regwatch.cli", "kibana", "export", "--url", url, "--out", str(out)],
                       capture_output=True, text=True, env=env, check=True)
    finally:
        server.shutdown()
    exported = [json.loads(line) for line in out.read_text().splitlines()]
    assert {o["type"] for o in exported} == {"dashboard", "search"}
    assert all("exportedCount" not in o for o in exported)

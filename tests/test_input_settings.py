"""An input's settings reach what it parses: the zone of zone-less times (``timezone``) and the
service a line's records belong to (``service_name``, by default the platform's own name)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from pipeline.identity import Identity
from pipeline.inputs import agent_fields
from pipeline.reader import FileSource, Line
from regwatch.config import load_config
from regwatch.ship import build_inputs, build_shipper, shipper_id

UVICORN = b'2026-11-25 20:07:06,123 INFO uvicorn.access: 10.0.0.5:40000 - "GET /health HTTP/1.1" 200'
SAMPLES = Path(__file__).parent / "samples" / "audit"


def _config(tmp_path: Path, inputs: list[dict]) -> Path:
    path = tmp_path / "regwatch.yaml"
    path.write_text(yaml.safe_dump({"elasticsearch": {"hosts": ["http://127.0.0.1:1"]}, "namespace": "zones",
                                    "checkpoint_file": str(tmp_path / "c.json"), "metrics_port": None,
                                    "inputs": inputs}))
    return path


def test_an_inputs_timezone_reads_its_zone_less_times_in_that_zone(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path, [
        {"paths": ["/x/a.log"], "format": "uvicorn", "timezone": "Europe/Amsterdam"},
        {"paths": ["/x/b.log"], "format": "uvicorn"}]))
    amsterdam, utc = (i.parse(UVICORN) for i in build_inputs(config))
    assert (amsterdam["@timestamp"], amsterdam["event"]["timezone"]) == ("2026-11-25T19:07:06.123Z", "Europe/Amsterdam")
    assert (utc["@timestamp"], utc["event"]["timezone"]) == ("2026-11-25T20:07:06.123Z", "UTC")


def test_an_unknown_zone_is_one_line_naming_the_key(tmp_path: Path) -> None:
    path = _config(tmp_path, [{"paths": ["/x/a.log"], "format": "uvicorn", "timezone": "Mars/Olympus"}])
    done = subprocess.run([sys.executable, "-m", "regwatch.cli", "ship", "--once", "-c", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    [line] = [x for x in done.stderr.splitlines() if x.strip()]
    assert "inputs.0.timezone" in line and "Mars/Olympus" in line, line


def test_each_platform_s_records_name_their_own_service_unless_configured(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path, [
        {"paths": ["/x/a.log"], "format": "cloudtrail"},
        {"paths": ["/x/b.log"], "format": "databricks-audit"},
        {"paths": ["/x/c.log"], "format": "databricks-audit", "service_name": "ml-platform"}]))
    cloudtrail, databricks, named = build_inputs(config)
    trail = (SAMPLES / "cloudtrail.jsonl").read_bytes().splitlines()[0]
    audit = (SAMPLES / "databricks.jsonl").read_bytes().splitlines()[0]
    assert cloudtrail.parse(trail)["service"]["name"] == "sagemaker"
    assert databricks.parse(audit)["service"]["name"] == "databricks"
    assert named.parse(audit)["service"]["name"] == "ml-platform"


def test_every_shipped_document_names_this_shipper_as_its_agent(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path, [{"paths": ["/x/a.log"], "format": "uvicorn"}]))
    shipper = build_shipper(config)
    line = UVICORN + b"\n"
    [item] = shipper._items([Line(FileSource(0, "/x/a.log", 1, 2, Identity("f" * 16, 1, 2)), 0, len(line), line)])
    doc = json.loads(item.body.splitlines()[1])
    assert doc["agent"] == agent_fields(config.host(), shipper_id(config)) == {
        "type": "regwatch", "version": doc["agent"]["version"], "id": f"{config.host()}:{tmp_path / 'c.json'}",
        "name": config.host()}

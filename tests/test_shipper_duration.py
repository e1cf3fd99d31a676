"""An access log without a response time: one warning per input and a counter, not silence.

With a log format that records no request time, every latency panel and ``registry-slow-p95``
stay empty. The shipper says so once per input (naming the file and the setting to change) and
counts every such line in ``regwatch_events_without_duration_total{input}``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from parsers import LineParser, ParseContext
from pipeline.inputs import lacks_duration
from regwatch.config import load_config
from regwatch.ship import build_shipper
from support.shipping import indexed, line, write_config

REGWATCH = [sys.executable, "-m", "regwatch.cli"]
SAMPLES = Path(__file__).parent / "samples"
LINES = 600  # more than one queue chunk (250 lines): the warning is once per input, not per chunk
METRIC = "regwatch_events_without_duration_total"


def combined(seq: int) -> bytes:
    """nginx's built-in ``combined`` format: no request time."""
    return line(seq).split(b" rt=")[0] + b"\n"


def write_log(path: Path, make) -> Path:
    path.write_bytes(b"".join(make(seq) for seq in range(LINES)))
    return path


def ship_once(config: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*REGWATCH, "ship", "-c", str(config), "--once"], capture_output=True, text=True,
                            check=False, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def warnings(stderr: str) -> list[str]:
    return [row for row in stderr.splitlines() if "access_lines_without_duration" in row]


def counted(config: Path) -> float:
    """The counter after one in-process ``--once`` run of the config (0 when never touched)."""
    shipper = build_shipper(load_config(config))
    shipper.run(once=True)
    registry = shipper.metrics.registry
    return sum(sample.value for metric in registry.collect() for sample in metric.samples
               if sample.name == METRIC)


def test_a_log_without_request_time_warns_once_naming_the_file_and_counts_every_line(
        es: Elasticsearch, es_url: str, namespace: str, tmp_path: Path) -> None:
    source = write_log(tmp_path / "combined.log", combined)
    result = ship_once(write_config(tmp_path / "c.yaml", es_url, namespace, [str(source)]))
    assert f"lines_read={LINES}" in result.stdout
    [warning] = warnings(result.stderr)
    assert str(source) in warning and "log_format" in warning, warning
    assert indexed(es, namespace) == LINES  # the lines still ship: only the latency is missing

    again = tmp_path / "again"
    again.mkdir()
    source = write_log(again / "combined.log", combined)
    assert counted(write_config(again / "c.yaml", es_url, namespace + "b", [str(source)])) == LINES


def test_the_recommended_log_format_neither_warns_nor_counts(es: Elasticsearch, es_url: str, namespace: str,
                                                             tmp_path: Path) -> None:
    source = write_log(tmp_path / "regwatch.log", line)  # log_format regwatch: rt=, uct=, urt=
    result = ship_once(write_config(tmp_path / "c.yaml", es_url, namespace, [str(source)]))
    assert f"lines_read={LINES}" in result.stdout
    assert warnings(result.stderr) == []
    again = tmp_path / "again"
    again.mkdir()
    source = write_log(again / "regwatch.log", line)
    assert counted(write_config(again / "c.yaml", es_url, namespace + "b", [str(source)])) == 0


@pytest.mark.parametrize(("fmt", "sample"), [
    ("audit", "audit/canonical.jsonl"),
    ("databricks-audit", "audit/databricks.jsonl"),
    ("cloudtrail", "audit/cloudtrail.jsonl"),
])
def test_audit_records_are_not_access_lines_without_duration(fmt: str, sample: str) -> None:
    """An audit record never has a response time: no warning is owed for it."""
    parser = LineParser(ParseContext(format=fmt))
    docs = [parser.parse(raw) for raw in (SAMPLES / sample).read_bytes().splitlines() if raw.strip()]
    assert docs and not any(lacks_duration(doc) for doc in docs)


def test_only_an_access_line_without_its_duration_lacks_one() -> None:
    parser = LineParser(ParseContext(format="nginx"))
    assert lacks_duration(parser.parse(combined(1)))
    assert not lacks_duration(parser.parse(line(1)))
    assert not lacks_duration(parser.parse(b"not a log line"))  # a dead-letter is no access event

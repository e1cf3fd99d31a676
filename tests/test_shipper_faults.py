"""The shipper's promises under faults, against a real Elasticsearch and real processes.

Rotation by rename and by copytruncate while the writer keeps writing, kill -9 at random moments
(with data stream rollovers while the daemon is down), both at once,
an Elasticsearch outage three times the sink's longest backoff: in every case each line is
indexed exactly once.
"""

from __future__ import annotations

import inspect
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from elasticsearch import Elasticsearch

from pipeline import templates
from pipeline.sink import BulkSink
from regwatch import localnode
from regwatch.config import load_config
from regwatch.ship import build_shipper
from support.shipping import indexed, line, seq_counts, wait_for, write_config

pytestmark = pytest.mark.slow
REGWATCH = [sys.executable, "-m", "regwatch.cli"]




def assert_exactly_once(es: Elasticsearch, namespace: str, total: int) -> None:
    wait_for(lambda: indexed(es, namespace) >= total, timeout=90)
    time.sleep(1.0)  # anything late and duplicated would show up now
    counts = seq_counts(es, namespace)
    missing = [s for s in range(total) if s not in counts]
    twice = {s: c for s, c in counts.items() if c != 1}
    assert not missing, f"{len(missing)} lines never indexed, e.g. {missing[:5]}"
    assert not twice, f"{len(twice)} lines indexed more than once, e.g. {list(twice.items())[:5]}"
    strays = es.search(index=f"logs-modelregistry.*-{namespace}", size=5,
                       query={"bool": {"must_not": {"exists": {"field": "url.query"}}}})["hits"]["hits"]
    assert not strays, f"documents that are no line of the writer: {[h['_source'] for h in strays]}"
    assert len(counts) == total == indexed(es, namespace)


def _roll_over(es: Elasticsearch, namespace: str) -> int:
    streams = es.indices.resolve_index(name=f"logs-modelregistry.*-{namespace}")["data_streams"]
    return sum(es.indices.rollover(alias=stream["name"])["rolled_over"] for stream in streams)


class Writer(threading.Thread):
    """Appends numbered lines in bursts and rotates the file the way logrotate would."""

    def __init__(self, log: Path, total: int, rotate_every: int, mode: str, burst: int = 200) -> None:
        super().__init__(daemon=True)
        self.log, self.total, self.rotate_every, self.mode, self.burst = log, total, rotate_every, mode, burst
        self.rotations = 0

    def _shift(self) -> None:
        rotated = sorted(self.log.parent.glob(self.log.name + ".*"), key=lambda p: int(p.suffix[1:]), reverse=True)
        for path in rotated:
            os.rename(path, path.with_suffix(f".{int(path.suffix[1:]) + 1}"))

    def run(self) -> None:
        handle = open(self.log, "ab", buffering=0)
        late_writes = 0
        for seq in range(self.total):
            handle.write(line(seq))
            if late_writes:
                late_writes -= 1
                if not late_writes:  # the writer reopens its log (nginx on USR1)
                    handle.close()
                    handle = open(self.log, "ab", buffering=0)
            if seq % self.rotate_every == self.rotate_every - 1:
                self._shift()
                if self.mode == "rename":
                    os.rename(self.log, self.log.with_name(self.log.name + ".1"))
                    late_writes = 50  # keeps writing into the renamed file for a while
                else:  # copytruncate
                    shutil.copyfile(self.log, self.log.with_name(self.log.name + ".1"))
                    os.truncate(self.log, 0)
                self.rotations += 1
            if seq % self.burst == 0:
                time.sleep(0.005)
        handle.close()


@pytest.mark.parametrize("mode", ["rename", "copytruncate"])
def test_rotation_during_continuous_writes_indexes_every_line_once(es: Elasticsearch, es_url: str, namespace: str,
                                                                     tmp_path: Path, mode: str) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(b"")
    config = load_config(write_config(tmp_path / "c.yaml", es_url, namespace, [str(log) + "*"]))
    shipper = build_shipper(config)
    runner = threading.Thread(target=shipper.run, daemon=True)
    runner.start()
    total = 30_000
    writer = Writer(log, total, rotate_every=4_000, mode=mode)
    writer.start()
    writer.join(timeout=120)
    assert writer.rotations == total // 4_000
    try:
        assert_exactly_once(es, namespace, total)
    finally:
        shipper.stop()
        runner.join(timeout=20)
    assert shipper.summary.lines_read >= total


def test_kill_9_at_random_moments_then_restart_loses_and_duplicates_nothing(es: Elasticsearch, es_url: str,
                                                                              namespace: str, tmp_path: Path,
                                                                              daemons) -> None:
    """Four kill -9 while 100,000 lines ship; after each, the data streams roll over (as their
    lifecycle does), so a replayed line is no longer deduplicated by ``op_type: create`` alone.
    Each kill lands within 0.4 s of the restarted daemon's first indexed line: the four of them
    together leave lines to the last run (asserted); more lines would test nothing more."""
    total = 100_000
    log = tmp_path / "access.log"
    with log.open("wb") as handle:
        for seq in range(total):
            handle.write(line(seq))
    config = write_config(tmp_path / "c.yaml", es_url, namespace, [str(log)])
    rng = random.Random(int(os.environ.get("REGWATCH_KILL_SEED", "2026")))
    kills = rollovers = 0
    for _ in range(4):
        before = indexed(es, namespace)
        daemon = daemons.start([*REGWATCH, "ship", "-c", str(config)])
        wait_for(lambda before=before: indexed(es, namespace) > before, timeout=60)  # shipping has begun
        time.sleep(rng.uniform(0.0, 0.4))  # then the kill lands between, or in the middle of, bulk requests
        daemon.send_signal(signal.SIGKILL)
        daemon.wait()
        kills += 1
        rollovers += _roll_over(es, namespace)
    assert 0 < indexed(es, namespace) < total, "the kills must land mid-stream"
    assert rollovers == 4
    final = subprocess.run([*REGWATCH, "ship", "-c", str(config), "--once"], capture_output=True, text=True,
                           check=True, timeout=600)
    assert kills == 4
    assert_exactly_once(es, namespace, total)
    assert "duplicates_skipped=" in final.stdout


@pytest.mark.parametrize("mode", ["rename", "copytruncate"])
def test_kill_9_and_rollovers_during_rotation_index_every_line_once(es: Elasticsearch, es_url: str, namespace: str,
                                                                     tmp_path: Path, mode: str, daemons) -> None:
    """All at once: the writer writes and rotates, the daemon is killed -9 and restarted, the
    streams roll over while it is down. Every line is indexed once."""
    log = tmp_path / "access.log"
    log.write_bytes(b"")
    config = write_config(tmp_path / "c.yaml", es_url, namespace, [str(log) + "*"])
    total = 40_000
    writer = Writer(log, total, rotate_every=5_000, mode=mode, burst=20)  # about 10 s of writing
    writer.start()
    rng = random.Random(11)
    kills = rollovers = 0
    while writer.is_alive():
        daemon = daemons.start([*REGWATCH, "ship", "-c", str(config)])
        time.sleep(rng.uniform(1.0, 2.5))
        daemon.send_signal(signal.SIGKILL)
        daemon.wait()
        kills += 1
        rollovers += _roll_over(es, namespace)
    writer.join()
    subprocess.run([*REGWATCH, "ship", "-c", str(config), "--once"], capture_output=True, text=True, check=True,
                   timeout=300)
    assert writer.rotations == total // 5_000 and kills >= 3 and rollovers >= 2
    assert_exactly_once(es, namespace, total)


def test_sighup_reloads_inputs(es: Elasticsearch, es_url: str, namespace: str, tmp_path: Path) -> None:
    first, second = tmp_path / "a.log", tmp_path / "b.log"
    first.write_bytes(b"".join(line(i) for i in range(10)))
    second.write_bytes(b"".join(line(i) for i in range(10, 20)))
    config = write_config(tmp_path / "c.yaml", es_url, namespace, [str(first)])
    daemon = subprocess.Popen([*REGWATCH, "ship", "-c", str(config)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: indexed(es, namespace) == 10)
        raw = yaml.safe_load(config.read_text())
        raw["inputs"].append({"paths": [str(second)], "format": "nginx"})
        config.write_text(yaml.safe_dump(raw))
        daemon.send_signal(signal.SIGHUP)
        wait_for(lambda: indexed(es, namespace) == 20)
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=15) == 0
    assert sorted(seq_counts(es, namespace)) == list(range(20))


# The shipper's sink (regwatch/ship.py) keeps BulkSink's default backoff cap.
OUTAGE_S = 3 * inspect.signature(BulkSink).parameters["max_backoff_s"].default


def _rss_mb(pid: int) -> float:
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith("VmRSS:"):
            return int(row.split()[1]) / 1024
    return 0.0


def test_elasticsearch_down_for_15s_loses_nothing_and_memory_stays_bounded(tmp_path: Path, monkeypatch) -> None:
    """A node of its own (another port), stopped while lines keep coming, then started. The outage
    (15 s) is three times the sink's longest backoff (5 s): the shipper goes through its whole
    backoff ladder and retries several times at the cap while the lines wait, its memory sampled
    throughout."""
    monkeypatch.delenv("ES_URL", raising=False)
    monkeypatch.setenv("REGWATCH_NO_DOCKER", "1")
    monkeypatch.setenv("REGWATCH_ES_PORT", os.environ.get("REGWATCH_OUTAGE_PORT", "9277"))
    node = localnode.up(fresh=True)  # an empty data folder: nothing from earlier runs
    es = Elasticsearch(node.url, request_timeout=30)
    templates.install(es, replicas=0)
    namespace = "outage" + str(os.getpid())
    log = tmp_path / "access.log"
    log.write_bytes(b"")
    config = write_config(tmp_path / "c.yaml", node.url, namespace, [str(log)], queue_max_events=2000)
    daemon = subprocess.Popen([*REGWATCH, "ship", "-c", str(config)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    total = 60_000
    writer = Writer(log, total, rotate_every=10**9, mode="rename", burst=100)
    rss: list[float] = []
    try:
        writer.start()
        wait_for(lambda: indexed(es, namespace) > 0, timeout=30)
        localnode.down()
        outage_started = time.monotonic()
        while time.monotonic() - outage_started < OUTAGE_S:
            rss.append(_rss_mb(daemon.pid))
            time.sleep(0.5)
        assert daemon.poll() is None, "the daemon must survive the outage"
        localnode.up()
        writer.join(timeout=120)
        assert_exactly_once(es, namespace, total)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=20)
        localnode.down()
    assert max(rss) < 200, f"peak RSS during the outage {max(rss):.0f} MB"
    growth = max(rss[len(rss) // 2:]) - max(rss[: len(rss) // 2])
    assert growth < 20, f"memory kept growing during the outage: +{growth:.0f} MB"

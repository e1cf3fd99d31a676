"""Capacity figures on a real three-node cluster of the local distribution (docs/capacity.md).

    python bench/capacity_bench.py [--events 10000000] [--ship-lines 300000] [--skip-loss]

1. Shipping: events/s of one ``regwatch ship --once`` over a file of MLflow nginx lines of every
   kind, then of three shippers (three files, three host names) together.
2. Node loss: the longest pause in indexing (no new event visible) after ``kill -9`` of a data
   node, then of the elected master, while three shippers ship 200,000 lines (bench/cluster.py;
   tests/test_cluster.py asserts the same scenario); the node is brought back after each.
3. Disk: ``--events`` documents of every kind (the parsers' own encoding, ids as the shipper's),
   spread over 7 days, force-merged to one segment: bytes per million events of each kind
   (primaries, and with the replica).
4. Queries: each question of docs/queries.md (what the dashboards ask) and the overview panels
   over the week (events per kind and p95 latency per hour), request cache off: median and
   worst of 5 after a warm-up.

Everything runs on a cluster of its own (free ports from 19400), stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from functools import partial
from pathlib import Path
from queue import Queue

from cluster import Cluster, indexing_pause, start_cluster, stop_cluster
from workload import NOW, registry_line, ship_config, write_log

from parsers import LineParser, ParseContext
from pipeline import templates
from regwatch.logging import configure

DOCS = Path(__file__).resolve().parent.parent / "docs"


def shipping(cluster: Cluster, workdir: Path, lines: int) -> dict[str, float]:
    logs = []
    for i in range(3):
        logs.append(workdir / f"reg-{i}.log")
        write_log(logs[-1], lines, i * lines)
    regwatch = [sys.executable, "-m", "regwatch.cli", "ship", "--once", "-c"]
    one = ship_config(workdir / "one", cluster.urls, "capone", logs[0], "registry-0", 0)
    started = time.perf_counter()
    subprocess.run([*regwatch, str(one)], check=True, capture_output=True)
    single = lines / (time.perf_counter() - started)
    configs = [ship_config(workdir / f"three-{i}", cluster.urls, "capthree", log, f"registry-{i}", i)
               for i, log in enumerate(logs)]
    started = time.perf_counter()
    processes = [subprocess.Popen([*regwatch, str(c)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for c in configs]
    codes = [p.wait() for p in processes]
    together = 3 * lines / (time.perf_counter() - started)
    assert codes == [0, 0, 0], codes
    return {"one_shipper_events_per_s": single, "three_shippers_events_per_s": together}


def node_loss(cluster: Cluster, workdir: Path) -> dict[str, float]:
    figures = {}
    for victim in ("data", "master"):
        folder = workdir / f"loss-{victim}"
        folder.mkdir()
        figures[f"pause_after_{victim}_node_loss_s"] = indexing_pause(cluster, folder, f"caploss{victim}", victim)
        cluster.bring_back()
    return figures


def load_corpus(cluster: Cluster, namespace: str, events: int, threads: int = 3, batch: int = 5000) -> float:
    """``events`` documents spread over the 7 days before NOW, bulk-indexed in parallel."""
    parser = LineParser(ParseContext(namespace=namespace, format="nginx", host_name="registry-0"))
    work: Queue[bytes | None] = Queue(maxsize=threads * 2)
    span = 7 * 24 * 3600

    def produce() -> None:
        rng = random.Random(42)
        for start in range(0, events, batch):
            body = []
            for seq in range(start, min(events, start + batch)):
                when = NOW - timedelta(seconds=span * (1 - seq / events))
                doc, encoded = parser.parse_encoded(registry_line(seq, rng, when))
                index = f"{doc['data_stream']['type']}-{doc['data_stream']['dataset']}-{namespace}"
                body.append(b'{"create":{"_index":"%s","_id":"c%x"}}\n' % (index.encode(), seq) + encoded)
            work.put(b"".join(body))
        for _ in range(threads):
            work.put(None)

    def consume() -> None:
        while (body := work.get()) is not None:
            for _ in range(20):
                response = cluster.client.bulk(operations=body, filter_path="errors,items.*.status")
                if not response.get("errors"):
                    break
                statuses = {next(iter(i.values()))["status"] for i in response["items"]}
                if statuses <= {201, 409}:
                    break
                time.sleep(1)

    started = time.perf_counter()
    workers = [threading.Thread(target=produce)] + [threading.Thread(target=consume) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return events / (time.perf_counter() - started)


def disk(cluster: Cluster, namespace: str) -> dict[str, dict[str, float]]:
    pattern = f"logs-modelregistry.*-{namespace}"
    cluster.client.indices.refresh(index=pattern)
    cluster.client.options(request_timeout=3600).indices.forcemerge(index=pattern, max_num_segments=1)
    stats = cluster.client.indices.stats(index=pattern, metric="docs,store")["indices"]
    per_kind: dict[str, dict[str, float]] = {}
    for name, figures in stats.items():
        kind = re.sub(r"^\.ds-logs-modelregistry\.(\w+)-.*$", r"\1", name)
        docs = figures["primaries"]["docs"]["count"]
        if docs:
            row = per_kind.setdefault(kind, {"docs": 0, "primary_bytes": 0, "total_bytes": 0})
            row["docs"] += docs
            row["primary_bytes"] += figures["primaries"]["store"]["size_in_bytes"]
            row["total_bytes"] += figures["total"]["store"]["size_in_bytes"]
    for row in per_kind.values():
        row["mb_per_million_primary"] = row["primary_bytes"] / row["docs"] * 1e6 / 2**20
        row["mb_per_million_with_replica"] = row["total_bytes"] / row["docs"] * 1e6 / 2**20
    return per_kind


def queries(cluster: Cluster, namespace: str) -> dict[str, dict[str, float]]:
    text = (DOCS / "queries.md").read_text()
    found = re.findall(r"<!-- query:(\S+) index:(\S+) -->\s*```json\n(.*?)```", text, re.S)
    pinned = NOW.strftime("%Y-%m-%dT%H:%M:%SZ||")
    timings: dict[str, dict[str, float]] = {}
    for name, index, body in found:
        request = json.loads(body.replace('"now', f'"{pinned}'))
        target = index.replace("-default", f"-{namespace}")
        # A question about a kind the corpus has none of (a stream not created yet) is timed as
        # the dashboards see it: no hits, not an error.
        timings[name] = _timed(partial(cluster.client.search, index=target, request_cache=False,
                                       allow_no_indices=True, ignore_unavailable=True, **request))
    # The dashboards' overview panels over a week: events per kind per hour, p95 latency per hour.
    week = {"size": 0, "query": {"range": {"@timestamp": {"gte": f"{pinned}-7d", "lte": pinned[:-2]}}},
            "aggs": {"hour": {"date_histogram": {"field": "@timestamp", "fixed_interval": "1h"},
                              "aggs": {"kind": {"terms": {"field": "data_stream.dataset", "size": 10}},
                                       "p95": {"percentiles": {"field": "event.duration", "percents": [95]}}}}}}
    timings["overview-week-per-hour"] = _timed(lambda: cluster.client.search(
        index=f"logs-modelregistry.*-{namespace}", request_cache=False, **week))
    return timings


def _timed(call, runs: int = 5) -> dict[str, float]:
    call()
    took = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        took.append((time.perf_counter() - started) * 1000)
    return {"median_ms": statistics.median(took), "worst_ms": max(took)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--ship-lines", type=int, default=300_000)
    parser.add_argument("--skip-loss", action="store_true")
    args = parser.parse_args()
    configure("WARNING", json=True)
    workdir = Path(tempfile.mkdtemp(prefix="regwatch-capacity-"))
    cluster = start_cluster()
    try:
        templates.install(cluster.client, replicas=1)
        nodes = cluster.client.cat.nodes(format="json", h="name,heap.max")
        print(f"cluster: {len(nodes)} nodes, heap {nodes[0]['heap.max']} each, replicas 1, "
              f"{os.cpu_count()} cores", flush=True)
        for key, value in shipping(cluster, workdir, args.ship_lines).items():
            print(f"{key}: {value:.0f}", flush=True)
        if not args.skip_loss:
            for key, value in node_loss(cluster, workdir).items():
                print(f"{key}: {value:.1f}", flush=True)
        rate = load_corpus(cluster, "capacity", args.events)
        print(f"corpus: {args.events} events bulk-indexed at {rate:.0f}/s", flush=True)
        for kind, row in sorted(disk(cluster, "capacity").items()):
            print(f"disk {kind}: {row['docs']} docs, {row['mb_per_million_primary']:.1f} MiB per million "
                  f"(primaries), {row['mb_per_million_with_replica']:.1f} MiB with the replica", flush=True)
        for name, timing in queries(cluster, "capacity").items():
            print(f"query {name} at {args.events} events: median {timing['median_ms']:.0f} ms, "
                  f"worst {timing['worst_ms']:.0f} ms", flush=True)
    finally:
        stop_cluster(cluster)


if __name__ == "__main__":
    main()

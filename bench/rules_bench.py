"""How long one rule-runner cycle of 100 rules takes on the local node (target: under 2 s).

    python bench/rules_bench.py [--rules 100] [--events 20000]

Indexes events with ingest times over the last hour into a fresh namespace, builds a mix of
rules (threshold, percentile, ratio, absence, spike, anomaly, new term, change, match, grouped
and not), and times a few full cycles: claim, one _msearch, state transitions, delivery.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from elasticsearch import Elasticsearch  # noqa: E402

from pipeline import templates  # noqa: E402
from regwatch import localnode  # noqa: E402
from regwatch.logging import configure  # noqa: E402
from rules.model import load_rules  # noqa: E402
from rules.runner import Runner  # noqa: E402

KINDS = ("retrieval", "registration", "version", "error", "access")
TEMPLATES = [
    "{{name: r{i}, type: threshold, kinds: [error], window: 5m, interval: 1m, condition: {{op: '>', value: {i}}}}}",
    "{{name: r{i}, type: threshold, kinds: [retrieval], group_by: modelregistry.model.name, window: 5m, interval: 1m,"
    " aggregate: {{function: percentile, field: event.duration, percentile: 95}}, condition: {{op: '>', value: 1e9}}}}",
    "{{name: r{i}, type: ratio, kinds: [retrieval, error], numerator: 'event.outcome:failure', window: 5m, interval: 1m,"
    " condition: {{op: '>', value: 0.05}}}}",
    "{{name: r{i}, type: absence, kinds: [registration], window: 15m, interval: 1m, minimum: 1}}",
    "{{name: r{i}, type: spike, kinds: [retrieval], window: 5m, interval: 1m, factor: 3}}",
    "{{name: r{i}, type: anomaly, kinds: [access], window: 5m, interval: 1m, buckets: 12, z: 3}}",
    "{{name: r{i}, type: new_term, kinds: [retrieval], field: user.name, window: 5m, interval: 1m, lookback: 7d}}",
    "{{name: r{i}, type: change, kinds: [version], group_by: modelregistry.model.name, field: modelregistry.model.version,"
    " window: 1d, interval: 1m}}",
    "{{name: r{i}, type: match, kinds: [registration], terms: {{event.action: registered-model-delete}}, interval: 1m}}",
    "{{name: r{i}, type: threshold, kinds: [retrieval], group_by: user.name, window: 5m, interval: 1m,"
    " condition: {{op: '>', value: 1000}}}}",
]


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__)
    args.add_argument("--rules", type=int, default=100)
    args.add_argument("--events", type=int, default=20_000)
    options = args.parse_args()
    configure("WARNING", json=True)
    node = localnode.up()
    es = Elasticsearch(node.url, request_timeout=60)
    templates.install(es)
    namespace = "rulebench" + uuid.uuid4().hex[:6]
    now = time.time()
    operations = []
    for i in range(options.events):
        kind = KINDS[i % len(KINDS)]
        at = int((now - 3600 + 3600 * i / options.events) * 1000)
        operations += [{"create": {"_index": f"logs-modelregistry.{kind}-{namespace}"}},
                       {"@timestamp": at, "event": {"ingested": at, "duration": 1_000_000 * (i % 500),
                                                    "outcome": "failure" if kind == "error" else "success",
                                                    "action": "x"},
                        "user": {"name": f"user{i % 40}"},
                        "modelregistry": {"model": {"name": f"model{i % 25}", "version": str(i % 7)}}}]
    for start in range(0, len(operations), 10_000):
        es.bulk(operations=operations[start:start + 10_000])
    es.indices.refresh(index=f"logs-modelregistry.*-{namespace}")
    with tempfile.TemporaryDirectory() as tmp:
        lines = ["rules:"] + [f"  - {TEMPLATES[i % len(TEMPLATES)].format(i=i)}" for i in range(options.rules)]
        (Path(tmp) / "bench.yaml").write_text("\n".join(lines) + "\n")
        rules = load_rules(Path(tmp))
    runner = Runner(es, rules, namespace)
    timings = []
    for cycle in range(5):
        started = time.perf_counter()
        report = runner.cycle(now=now + 60 * cycle)
        timings.append(time.perf_counter() - started)
        assert len(report.evaluated) == options.rules, report
    print(f"rules: {options.rules} rules over {options.events} events, one cycle (claim, one _msearch, transitions, "
          f"delivery): median {statistics.median(timings):.2f}s, max {max(timings):.2f}s over {len(timings)} cycles "
          f"(target < 2 s)")


if __name__ == "__main__":
    main()

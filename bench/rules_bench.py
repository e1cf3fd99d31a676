"""The rule runner's cost on the local node: time per cycle, requests per cycle and per idle
wake-up, and how long a notification is exposed to a crash.

    python bench/rules_bench.py [--rules 100] [--events 20000]

Indexes events with ingest times over the last hour into a fresh namespace and builds a mix of
rules (threshold, percentile, ratio, absence, spike, anomaly, new term, change, match, grouped
and not). Prints:

* the time of a full cycle of ``--rules`` rules (claim, one _msearch, transitions, delivery;
  goal under 0.3 s, #31), the requests it sends (a bulk per cycle for the alert writes, not
  one request per transition) and the searches its _msearch carries (rules reading the same
  streams over the same window share one);
* for 50 and 500 rules, the requests a steady cycle sends (all of them and the searches among them;
  goal: one search) and the requests of an idle wake-up (goal: none);
* the exposure of 200 notifications to a local webhook: from the send to its outcome recorded,
  the only time in which a runner killed would send that notification again.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from elasticsearch import Elasticsearch

from pipeline import templates
from regwatch import localnode
from regwatch.logging import configure
from rules.model import load_rules
from rules.runner import Runner

KINDS = ("retrieval", "registration", "version", "error", "access")
TEMPLATES = [
    "{{name: r{i}, type: threshold, kinds: [error], window: 5m, interval: 1m, condition: {{op: '>', value: {i}}}}}",
    "{{name: r{i}, type: threshold, kinds: [retrieval], group_by: modelregistry.model.name, window: 5m, interval: 1m,"
    " aggregate: {{function: percentile, field: event.duration, percentile: 95}}, condition: {{op: '>', value: 1e9}}}}",
    "{{name: r{i}, type: ratio, kinds: [retrieval, error], numerator: 'event.outcome:failure', window: 5m,"
    " interval: 1m,"
    " condition: {{op: '>', value: 0.05}}}}",
    "{{name: r{i}, type: absence, kinds: [registration], window: 15m, interval: 1m, minimum: 1}}",
    "{{name: r{i}, type: spike, kinds: [retrieval], window: 5m, interval: 1m, factor: 3}}",
    "{{name: r{i}, type: anomaly, kinds: [access], window: 5m, interval: 1m, buckets: 12, z: 3}}",
    "{{name: r{i}, type: new_term, kinds: [retrieval], field: user.name, window: 5m, interval: 1m, lookback: 7d}}",
    "{{name: r{i}, type: change, kinds: [version], group_by: modelregistry.model.name,"
    " field: modelregistry.model.version,"
    " window: 1d, interval: 1m}}",
    "{{name: r{i}, type: match, kinds: [registration], terms: {{event.action: registered-model-delete}},"
    " interval: 1m}}",
    "{{name: r{i}, type: threshold, kinds: [retrieval], group_by: user.name, window: 5m, interval: 1m,"
    " condition: {{op: '>', value: 1000}}}}",
]


def rule_file(count: int) -> list:
    with tempfile.TemporaryDirectory() as tmp:
        lines = ["rules:"] + [f"  - {TEMPLATES[i % len(TEMPLATES)].format(i=i)[:-1]}, notify: []}}"
                              for i in range(count)]
        (Path(tmp) / "bench.yaml").write_text("\n".join(lines) + "\n")
        return load_rules(Path(tmp))


class Counting:
    """The requests a client sends (method, path)."""

    def __init__(self, client: Elasticsearch) -> None:
        self.paths: list[tuple[str, str]] = []
        self.packed: list[int] = []  # the searches each _msearch carried (rules sharing one are one)
        original = client.perform_request

        def counted(method, path, **kwargs):
            self.paths.append((method, path))
            if path.endswith("/_msearch") and isinstance(kwargs.get("body"), list):
                self.packed.append(len(kwargs["body"]) // 2)
            return original(method, path, **kwargs)

        client.perform_request = counted

    def searches(self) -> int:
        return sum(1 for _, p in self.paths if p.endswith(("/_search", "/_msearch", "/_count")))


def requests(url: str, namespace: str, now: float) -> None:
    for count in (50, 500):
        client = Elasticsearch(url, request_timeout=60)
        runner = Runner(client, rule_file(count), namespace + f"r{count}")
        runner.cycle(now=now)  # the first cycle creates the cycle documents and the alerts that fire
        counting = Counting(client)
        cycles = []
        for step in range(1, 4):
            counting.paths.clear()
            runner.cycle(now=now + 60 * step)
            cycles.append((len(counting.paths), counting.searches()))
        counting.paths.clear()
        wakeups = 0
        for second in range(5, 60, 5):
            wakeups += runner.cycle(now=now + 180 + second).idle
        print(f"requests: {count} rules: per steady cycle {statistics.median(c[0] for c in cycles):.0f} requests of "
              f"which {statistics.median(c[1] for c in cycles):.0f} search (goal 1); per idle wake-up "
              f"{len(counting.paths) / max(wakeups, 1):.0f} requests over {wakeups} wake-ups (goal 0)")


def exposure(url: str, namespace: str, now: float) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from rules.notify import WebhookTarget

    class Quiet(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    es = Elasticsearch(url, request_timeout=60)
    text = ("rules:\n  - {name: flip, type: threshold, kinds: [error], group_by: user.name, window: 60s, interval: 60s,"
            " condition: {op: '>', value: 0}, notify: [hook], sample: {size: 0}}\n")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "r.yaml").write_text(text)
        rules = load_rules(Path(tmp))
    hook = {"hook": WebhookTarget(type="webhook", url=f"http://127.0.0.1:{server.server_address[1]}/")}
    runner = Runner(es, rules, namespace + "x", hook, "bench")
    seen: list[float] = []
    runner.metrics.exposure = type("Seen", (), {"observe": lambda self, v: seen.append(v)})()
    stream = f"logs-modelregistry.error-{namespace}x"
    for step in range(4):  # 50 groups fire, then resolve, then fire, then resolve: 200 notifications
        if step % 2 == 0:
            at = int((now + 60 * step + 30) * 1000)
            ops = []
            for user in range(50):
                ops += [{"create": {"_index": stream}}, {"@timestamp": at, "event": {"ingested": at},
                                                         "user": {"name": f"u{user}"}}]
            es.bulk(operations=ops, refresh=True)
        at_step, started = now + 60 * step + 61, time.monotonic()
        runner.cycle(now=at_step)
        # A cycle waits half a second for its sends (one target's go one after the other): the
        # runner wakes again for each answer that came, on a clock ten times as fast (retries are
        # due in seconds), until the 50 are recorded or the rule is due again.
        while len(seen) < 50 * (step + 1) and (moment := (time.monotonic() - started) * 10) < 55:
            time.sleep(0.01)
            runner.cycle(now=at_step + moment)
    server.shutdown()
    seen.sort()
    print(f"exposure: {len(seen)} notifications, send to outcome recorded: "
          f"median {statistics.median(seen) * 1000:.1f} ms, "
          f"p99 {seen[int(len(seen) * 0.99) - 1] * 1000:.1f} ms, max {seen[-1] * 1000:.1f} ms")


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
    client = Elasticsearch(node.url, request_timeout=60)
    runner = Runner(client, rule_file(options.rules), namespace)
    counting = Counting(client)
    timings, sent, transitions, packed = [], [], [], []
    for cycle in range(5):
        counting.paths.clear()
        counting.packed.clear()
        started = time.perf_counter()
        report = runner.cycle(now=now + 60 * cycle)
        timings.append(time.perf_counter() - started)
        sent.append(len(counting.paths))
        packed.append(sum(counting.packed))
        transitions.append(len(report.transitions))
        assert len(report.evaluated) == options.rules, report
    print(f"rules: {options.rules} rules over {options.events} events, one cycle (claim, one _msearch, transitions, "
          f"delivery): median {statistics.median(timings):.2f}s, max {max(timings):.2f}s over {len(timings)} cycles "
          f"(goal < 0.3 s); requests per cycle: median {statistics.median(sent):.0f}, max {max(sent)} "
          f"(transitions per cycle: median {statistics.median(transitions):.0f}, max {max(transitions)}); searches "
          f"in the cycle's _msearch: median {statistics.median(packed):.0f} (the state and the rules' windows, rules "
          f"reading the same streams and window in one)")
    requests(node.url, namespace, now)
    exposure(node.url, namespace, now)


if __name__ == "__main__":
    main()

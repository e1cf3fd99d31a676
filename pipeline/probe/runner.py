"""The probe's loop: every interval, each target's checks and the host's resources, written."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import structlog
from elasticsearch import Elasticsearch

from contract.secrets import mask_secrets, redact_userinfo, request_secrets
from pipeline.probe.check import JOIN_GRACE_S, Answer, CheckResult, timed_request
from pipeline.probe.documents import availability_document, resource_document
from pipeline.probe.metrics import ProbeMetrics
from pipeline.probe.resources import ResourceSampler
from pipeline.probe.settings import ProbeSettings, TargetSettings
from pipeline.probe.transaction import run_transaction, transaction
from pipeline.probe.writer import DocumentWriter

log = structlog.get_logger(__name__)
STOP_FLUSH_S = 2.0  # once stopped, what is buffered gets this long to reach Elasticsearch
STOP_JOIN_S = 1.5  # and checks in flight (told to stop) and the writer this long to end


def http_client(target: TargetSettings) -> httpx.Client:
    """TLS verified by default, against the target's own CA file when it names one.

    No connection is kept between requests (as blackbox_exporter does): each check connects, so a
    registry that went away reads as refused, not as a pooled connection that broke, and every
    latency includes the connect and the TLS handshake a client would pay."""
    verify: bool | ssl.SSLContext = target.verify_certs
    if target.verify_certs and target.ca_file is not None:
        verify = ssl.create_default_context(cafile=str(target.ca_file))
    if not target.verify_certs:
        log.warning("probe_tls_unverified", target=target.name)
    return httpx.Client(verify=verify, follow_redirects=False, trust_env=False,
                        limits=httpx.Limits(max_keepalive_connections=0))


def _judge_body(expected: str | None) -> Callable[[Answer], str | None] | None:
    if expected is None:
        return None
    return lambda answer: None if expected in answer.text() else f"the answer does not contain {expected!r}"


def check_budget_s(target: TargetSettings) -> float:
    """The longest one check of ``target`` can take: each request ends by ``timeout_s``."""
    steps = 1 + (len(transaction(target.transaction.kind).steps) if target.transaction is not None else 0)
    return steps * (target.timeout_s + JOIN_GRACE_S)


def check_target(client: httpx.Client, target: TargetSettings,
                 stop: threading.Event | None = None) -> list[CheckResult]:
    """The health check, then (when it is up) the synthetic transaction; each request ends by
    ``timeout_s`` whatever the server does, at once when ``stop`` is set. SecretError when a
    header's environment variable is unusable."""
    headers = target.headers()
    health = timed_request(client, "GET", target.url, target=target.name, environment=target.environment,
                           step="health", expected_status=target.expected_status,
                           judge=_judge_body(target.expect_body), headers=headers, timeout_s=target.timeout_s,
                           max_body_bytes=target.max_body_bytes, stop=stop)
    results = [health]
    if health.up and target.transaction is not None and not (stop is not None and stop.is_set()):
        results += run_transaction(client, target, stop, headers)
    return results


@dataclass
class CycleReport:
    results: list[CheckResult] = field(default_factory=list)
    resource_documents: int = 0


class Probe:
    """Each target is checked in a thread of its own, so a target that hangs delays no other:
    every interval, each target whose previous check has ended gets a new one, and each check
    writes its documents when it ends (by its deadline). A target still being checked is skipped
    that interval (counted), so threads never pile up behind a slow registry."""

    def __init__(self, settings: ProbeSettings, es: Elasticsearch, namespace: str, host_name: str | None,
                 metrics: ProbeMetrics | None = None) -> None:
        self.settings = settings
        self.namespace = namespace
        self.host_name = host_name
        self.metrics = metrics or ProbeMetrics()
        self.clients = {t.name: http_client(t) for t in settings.targets}
        self.sampler = ResourceSampler(settings.resources) if settings.resources.enabled else None
        self.writer = DocumentWriter(es, self.metrics, settings.buffer_documents)
        self.flights: dict[str, threading.Thread] = {}  # target name -> its check in progress

    def _check_and_write(self, target: TargetSettings, stop: threading.Event | None,
                         collected: dict[str, list[CheckResult]] | None) -> None:
        try:
            results = check_target(self.clients[target.name], target, stop)
        except Exception as exc:  # a bug in one check must not stop the others
            try:
                secrets = request_secrets(target.url, target.headers())
            except Exception:  # no usable header secret: none to hide either, but the URL's
                secrets = request_secrets(target.url)
            message = mask_secrets(f"{type(exc).__name__}: {exc}", secrets)[:500]
            log.error("probe_check_crashed", target=target.name, error=message)
            results = [CheckResult(target.name, target.environment, redact_userinfo(target.url), "health", False,
                                   time.time(), 0.0, reason="probe_error", message=message)]
        # a check cut short because the probe stops says nothing about the registry
        results = [r for r in results if r.reason != "stopped"]
        documents = []
        for result in results:
            self.metrics.record(result)
            documents.append(availability_document(result, self.namespace, self.host_name))
            log.info("probe_check", target=result.target, step=result.step, up=result.up,
                     duration_ms=round(result.duration_s * 1000, 1), status=result.status, reason=result.reason)
        if documents:
            self.writer.add(documents)
        if collected is not None:
            collected[target.name] = results

    def _launch(self, stop: threading.Event | None,
                collected: dict[str, list[CheckResult]] | None = None) -> list[tuple[TargetSettings, threading.Thread]]:
        """A check for every target whose previous one has ended."""
        started = []
        for target in self.settings.targets:
            previous = self.flights.get(target.name)
            if previous is not None and previous.is_alive():
                self.metrics.skipped.labels(target.name).inc()
                log.warning("probe_check_still_running", target=target.name,
                            timeout_s=target.timeout_s, interval_s=self.settings.interval_s)
                continue
            thread = threading.Thread(target=self._check_and_write, args=(target, stop, collected),
                                      name=f"probe-check-{target.name}", daemon=True)
            self.flights[target.name] = thread
            thread.start()
            started.append((target, thread))
        return started

    def _sample_resources(self, report: CycleReport) -> None:
        if self.sampler is None:
            return
        started = time.time()
        documents = [resource_document(fields, self.namespace, self.host_name, started)
                     for fields in self.sampler.sample()]
        report.resource_documents += len(documents)
        self.writer.add(documents)

    def cycle(self, stop: threading.Event | None = None) -> CycleReport:
        """Every target checked at once, each to its end (bounded by its deadlines); the report
        lists their results in the targets' order."""
        report = CycleReport()
        collected: dict[str, list[CheckResult]] = {}
        for target, thread in self._launch(stop, collected):
            thread.join(check_budget_s(target) + 2.0)
        self._sample_resources(report)
        for target in self.settings.targets:
            report.results += collected.get(target.name, [])
        return report

    def run(self, stop: threading.Event, once: bool = False, flush_timeout_s: float = 60.0) -> CycleReport:
        """Check every interval until ``stop`` is set (one cycle with ``once``); the last cycle's
        report (the daemon's is empty: its checks end on their own time).

        Once ``stop`` is set the checks in flight end at once, what is buffered gets
        ``STOP_FLUSH_S`` to be written, and the probe returns: within a few seconds in any state."""
        report = CycleReport()
        next_at = time.monotonic()
        try:
            if once:
                report = self.cycle(stop)
            while not once and not stop.is_set():
                self._launch(stop)
                self._sample_resources(CycleReport())
                next_at += self.settings.interval_s
                stop.wait(max(0.0, next_at - time.monotonic()))
                if next_at < time.monotonic():  # sampling took longer than the interval: start afresh
                    next_at = time.monotonic()
        finally:
            end = time.monotonic() + STOP_JOIN_S
            for thread in list(self.flights.values()):
                thread.join(max(0.0, end - time.monotonic()))
            if once and not stop.is_set():
                flushed = self.writer.flush(flush_timeout_s, give_up=stop)
            else:
                flushed = self.writer.flush(STOP_FLUSH_S)
            if not flushed:
                log.warning("probe_documents_unwritten", buffered=len(self.writer.buffer))
            self.writer.close(STOP_JOIN_S)
            for client in self.clients.values():
                client.close()
        return report

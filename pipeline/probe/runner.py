"""The probe's loop: every interval, each target's checks and the host's resources, written."""

from __future__ import annotations

import ssl
import threading
import time
from dataclasses import dataclass, field

import httpx
import structlog
from elasticsearch import Elasticsearch

from pipeline.probe.check import CheckResult, timed_request
from pipeline.probe.documents import availability_document, resource_document
from pipeline.probe.metrics import ProbeMetrics
from pipeline.probe.resources import ResourceSampler
from pipeline.probe.settings import ProbeSettings, TargetSettings
from pipeline.probe.transaction import run_transaction
from pipeline.probe.writer import DocumentWriter

log = structlog.get_logger(__name__)


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


def _judge_body(expected: str | None):
    if expected is None:
        return None
    return lambda response: None if expected in response.text else f"the answer does not contain {expected!r}"


def check_target(client: httpx.Client, target: TargetSettings) -> list[CheckResult]:
    """The health check, then (when it is up) the synthetic transaction."""
    health = timed_request(client, "GET", target.url, target=target.name, environment=target.environment,
                           step="health", expected_status=target.expected_status,
                           judge=_judge_body(target.expect_body), headers=target.headers(), timeout=target.timeout_s)
    results = [health]
    if health.up and target.transaction is not None:
        results += run_transaction(client, target)
    return results


@dataclass
class CycleReport:
    results: list[CheckResult] = field(default_factory=list)
    resource_documents: int = 0


class Probe:
    def __init__(self, settings: ProbeSettings, es: Elasticsearch, namespace: str, host_name: str | None,
                 metrics: ProbeMetrics | None = None) -> None:
        self.settings = settings
        self.namespace = namespace
        self.host_name = host_name
        self.metrics = metrics or ProbeMetrics()
        self.clients = {t.name: http_client(t) for t in settings.targets}
        self.sampler = ResourceSampler(settings.resources) if settings.resources.enabled else None
        self.writer = DocumentWriter(es, self.metrics, settings.buffer_documents)

    def cycle(self) -> CycleReport:
        report = CycleReport()
        documents = []
        for target in self.settings.targets:
            try:
                results = check_target(self.clients[target.name], target)
            except Exception as exc:  # noqa: BLE001 - a bug in one check must not stop the others
                log.exception("probe_check_crashed", target=target.name)
                results = [CheckResult(target.name, target.environment, target.url, "health", False, time.time(), 0.0,
                                       reason="probe_error", message=f"{type(exc).__name__}: {exc}"[:500])]
            for result in results:
                self.metrics.record(result)
                documents.append(availability_document(result, self.namespace, self.host_name))
                log.info("probe_check", target=result.target, step=result.step, up=result.up,
                         duration_ms=round(result.duration_s * 1000, 1), status=result.status, reason=result.reason)
            report.results += results
        if self.sampler is not None:
            started = time.time()
            for fields in self.sampler.sample():
                documents.append(resource_document(fields, self.namespace, self.host_name, started))
                report.resource_documents += 1
        self.writer.add(documents)
        return report

    def run(self, stop: threading.Event, once: bool = False, flush_timeout_s: float = 60.0) -> CycleReport:
        """Check every interval until ``stop`` is set (one cycle with ``once``); the last cycle's report."""
        report = CycleReport()
        next_at = time.monotonic()
        try:
            while not stop.is_set():
                report = self.cycle()
                if once:
                    break
                next_at += self.settings.interval_s
                stop.wait(max(0.0, next_at - time.monotonic()))
                if next_at < time.monotonic():  # a cycle longer than the interval: start afresh
                    next_at = time.monotonic()
        finally:
            flushed = self.writer.flush(flush_timeout_s if once else 5.0)
            if not flushed:
                log.warning("probe_documents_unwritten", buffered=len(self.writer.buffer))
            self.writer.close()
            for client in self.clients.values():
                client.close()
        return report

"""Host and registry-process resources as ECS fields, sampled with psutil.

CPU percentages need two readings: the first sample of a sampler primes the counters (psutil's
``interval=None`` contract) and network bytes are the difference since the previous sample, so
a long-running probe reports each interval's traffic, not the host's lifetime total.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psutil
import structlog

from pipeline.probe.settings import ResourceSettings

log = structlog.get_logger(__name__)


class ResourceSampler:
    def __init__(self, settings: ResourceSettings) -> None:
        self.settings = settings
        self._net: tuple[int, int] | None = None
        self._process: psutil.Process | None = None
        psutil.cpu_percent(interval=None)

    def _find_process(self) -> psutil.Process | None:
        if self._process is not None and self._process.is_running():
            return self._process
        self._process = None
        pid: int | None = None
        if self.settings.pid_file is not None:
            try:
                pid = int(Path(self.settings.pid_file).read_text().strip())
            except (OSError, ValueError) as exc:
                log.warning("pid_file_unreadable", path=str(self.settings.pid_file), error=str(exc))
        if pid is None and self.settings.process_name:
            for candidate in psutil.process_iter(["name", "cmdline"]):
                cmdline = " ".join(candidate.info.get("cmdline") or [])
                if candidate.info.get("name") == self.settings.process_name or self.settings.process_name in cmdline:
                    pid = candidate.pid
                    break
        if pid is None:
            return None
        try:
            self._process = psutil.Process(pid)
            self._process.cpu_percent(interval=None)
        except psutil.Error:
            return None
        return self._process

    def sample(self) -> list[dict[str, Any]]:
        """One document body per disk path (host fields repeated), the process on the first."""
        memory = psutil.virtual_memory()
        net = psutil.net_io_counters()
        host: dict[str, Any] = {"cpu": {"usage": round(psutil.cpu_percent(interval=None) / 100, 4)}}
        if self._net is not None:
            host["network"] = {"ingress": {"bytes": max(0, net.bytes_recv - self._net[0])},
                               "egress": {"bytes": max(0, net.bytes_sent - self._net[1])}}
        self._net = (net.bytes_recv, net.bytes_sent)
        system_memory = {"total": memory.total, "actual": {"used": {"bytes": memory.total - memory.available,
                                                                     "pct": round(memory.percent / 100, 4)}}}
        docs = []
        for path in self.settings.disk_paths:
            try:
                disk = psutil.disk_usage(path)
            except OSError as exc:
                log.warning("disk_unreadable", path=path, error=str(exc))
                continue
            docs.append({"host": host, "system": {"memory": system_memory, "filesystem": {
                "mount_point": path, "total": disk.total, "free": disk.free,
                "used": {"bytes": disk.used, "pct": round(disk.percent / 100, 4)}}}})
        if not docs:
            docs.append({"host": host, "system": {"memory": system_memory}})
        process = self._find_process()
        if process is not None:
            try:
                with process.oneshot():
                    docs[0]["process"] = {"pid": process.pid, "name": process.name(),
                                          "cpu": {"pct": round(process.cpu_percent(interval=None) / 100, 4)},
                                          "memory": {"rss": {"bytes": process.memory_info().rss},
                                                     "pct": round(process.memory_percent() / 100, 4)}}
            except psutil.Error as exc:
                log.warning("process_gone", pid=process.pid, error=str(exc))
                self._process = None
        return docs

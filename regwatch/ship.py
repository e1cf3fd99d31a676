"""Wiring of the shipper: configuration -> parsers and pipeline, signals, metrics, summary."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

from parsers import FORMATS, LineParser, ParseContext
from parsers.encoded_access import encoded_parts
from parsers.routes import router_for
from pipeline.attribution import Attributor
from pipeline.checkpoint import CheckpointStore
from pipeline.heartbeat import Heartbeat
from pipeline.inputs import ShipInput
from pipeline.metrics import ShipperMetrics
from pipeline.scanner import DEFAULT_EXCLUDE, InputSpec
from pipeline.shipper import Shipper
from pipeline.sink import BulkSink
from regwatch.config import Config, load_config
from regwatch.esclient import client_from_config


def build_inputs(config: Config) -> list[ShipInput]:
    inputs = []
    for index, spec in enumerate(config.inputs):
        ctx = ParseContext(
            namespace=config.namespace, format=spec.format, service_name=spec.service_name,
            service_environment=spec.service_environment, host_name=config.host(),
            keep_original=spec.keep_original, platform=spec.platform, max_line_bytes=config.max_line_bytes,
            field_map=dict(spec.field_map), timezone=spec.timezone,
        )
        parser = LineParser(ctx, router_for(spec.routes, FORMATS[spec.format][1]))
        inputs.append(ShipInput(
            spec=InputSpec(index=index, paths=tuple(spec.paths), exclude=tuple(spec.exclude or DEFAULT_EXCLUDE),
                           start_at=spec.start_at, follow_symlinks=spec.follow_symlinks),
            parse=parser.parse, dead_letter=parser.dead_letter, name=f"{index}:{spec.format}",
            encode=encoded_parts(parser)))
    return inputs


def build_shipper(config: Config, config_path: Path | None = None,
                  progress: Callable[[int], None] | None = None) -> Shipper:
    metrics = ShipperMetrics()
    sink = BulkSink(client_from_config(config, bulk=True), metrics, shard_wait_s=config.elasticsearch.shard_wait_s)
    seen = {"mtime": _mtime(config_path)}

    def config_changed() -> bool:
        return config_path is not None and _mtime(config_path) != seen["mtime"]

    def reload() -> list[ShipInput] | None:
        if config_path is None:
            return None
        seen["mtime"] = _mtime(config_path)
        return build_inputs(load_config(config_path))

    def heartbeat(shipper: Shipper) -> Heartbeat:
        return Heartbeat(sink.client, config.namespace, shipper_id(config), config.host(),
                         config.heartbeat_every_s or 10.0, shipper.report)

    enrich = None
    if config.inventory.registries:  # the inventory names what retrievals retrieved (#30)
        # As often as the inventory looks (at most every 30 s): a new version's downloads are named
        # once the inventory has seen it and this table has read that.
        attributor = Attributor(sink.client, config.namespace, refresh_s=min(30.0, config.inventory.interval_s),
                                metrics=metrics)
        attributor.refresh()  # once before the first line (a failure is logged: lines go unnamed until the next)
        attributor.start()  # then in its own thread: a line never waits for it
        enrich = attributor.enrich
    return Shipper(sink, build_inputs(config), CheckpointStore(config.checkpoint_file), config, metrics,
                   reload=reload, config_changed=config_changed,
                   heartbeat=heartbeat if config.heartbeat_every_s is not None else None, progress=progress,
                   enrich=enrich, agent_id=shipper_id(config))


def shipper_id(config: Config) -> str:
    """The configured id, else host and checkpoint file: two shippers on one host are two."""
    return config.shipper_id or f"{config.host()}:{config.checkpoint_file}"


def _mtime(path: Path | None) -> float | None:
    try:
        return os.stat(path).st_mtime if path else None
    except OSError:
        return None


def install_signals(shipper: Shipper) -> None:
    signal.signal(signal.SIGTERM, lambda *_: shipper.stop())
    signal.signal(signal.SIGINT, lambda *_: shipper.stop())
    signal.signal(signal.SIGHUP, lambda *_: shipper.request_reload())

"""Sinks: `streamtap_sinks` (capture.sinks, --sink URL) publishes every event to NATS
JetStream or Redis Streams, and each answer's telemetry to OpenTelemetry, from the hub,
off the proxy's path (proxy_core/sinks)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

from mitmproxy import ctx, exceptions

from proxy_core.config.addresses import sink_problem
from proxy_core.hub.hub import Hub
from proxy_core.mitm.decoder_process import DecoderProcess, elsewhere
from proxy_core.sinks.brokers import broker_for
from proxy_core.sinks.otlp import OtlpSink
from proxy_core.sinks.runner import SinkRunner

logger = logging.getLogger(__name__)

DEFAULT_SPOOL_DIR = "run/spool"
DEFAULT_SPOOL_BYTES = 256 << 20


class Sinks:
    def __init__(self, hub: Hub, decoder: DecoderProcess | None = None) -> None:
        self.hub = hub
        self.decoder = decoder  # when it runs, the sinks run there instead
        self.runners: list[SinkRunner] = []
        self.telemetry: list[OtlpSink] = []

    def load(self, loader) -> None:
        loader.add_option("streamtap_sinks", Sequence[str], [],
                          "Publish every event to these brokers: nats://HOST:PORT/PREFIX, "
                          "redis://HOST:PORT/DB?stream=KEY; otlp+http://HOST:PORT[?content=true] for telemetry.")
        loader.add_option("streamtap_sink_spool_dir", str, DEFAULT_SPOOL_DIR,
                          "Directory of the sinks' on-disk spools (one per sink).")
        loader.add_option("streamtap_sink_spool_bytes", int, DEFAULT_SPOOL_BYTES,
                          "Bytes each sink may spool while its broker is slow or down; beyond, a gap.")

    def configure(self, updated: set[str]) -> None:
        if "streamtap_sinks" in updated:
            for url in ctx.options.streamtap_sinks:
                if problem := sink_problem(url):
                    raise exceptions.OptionsError(f"streamtap_sinks: {problem}")
        if "streamtap_sink_spool_bytes" in updated and ctx.options.streamtap_sink_spool_bytes < 1 << 20:
            raise exceptions.OptionsError("streamtap_sink_spool_bytes: must be at least 1048576")

    def running(self) -> None:
        if elsewhere(self.decoder):
            return
        for url in ctx.options.streamtap_sinks:
            if url.startswith("otlp+http:"):
                telemetry = OtlpSink(url, self.hub.instance)
                telemetry.start()
                self.hub.sinks.append(telemetry.put)
                self.telemetry.append(telemetry)
                logger.info(f"streamtap: sink {telemetry.name} (content {'on' if telemetry.content else 'off'})")
                continue
            broker = broker_for(url)
            spool = Path(ctx.options.streamtap_sink_spool_dir) / hashlib.sha256(url.encode()).hexdigest()[:16]
            runner = SinkRunner(broker, spool, ctx.options.streamtap_sink_spool_bytes, self.hub.instance,
                                self.hub.metrics)
            runner.start()
            self.hub.sinks.append(runner.put)
            self.runners.append(runner)
            logger.info(f"streamtap: sink {broker.name} (spool {spool})")

    async def done(self) -> None:
        for runner in self.runners:
            if runner.put in self.hub.sinks:
                self.hub.sinks.remove(runner.put)
            await runner.stop()
        self.runners = []
        for telemetry in self.telemetry:
            if telemetry.put in self.hub.sinks:
                self.hub.sinks.remove(telemetry.put)
            await asyncio.to_thread(telemetry.stop)  # flushes over HTTP
        self.telemetry = []

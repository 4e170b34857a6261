"""Sinks for `make bench`: the per-chunk path with three sinks on against none, and how
many events per second reach real NATS and Redis servers on loopback."""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

from proxy_core.hub.hub import Hub
from proxy_core.payloads import TextDelta
from proxy_core.pipeline.tap import StreamTap
from proxy_core.sinks.nats import NatsBroker
from proxy_core.sinks.redis import RedisBroker
from proxy_core.sinks.runner import SinkRunner
from tests.bench.tap_path import body
from tests.support.brokers import NatsServer, RedisServer

EVENTS = 50_000


class DefaultRedis(RedisServer):
    fsync = "everysec"  # Redis's default


def tap_with_sinks(sinks: int, rounds: int = 5) -> float:
    """µs per event of the tap path (1 KiB chunks) with `sinks` hub sinks attached."""

    async def once() -> float:
        hub = Hub(capacity=100_000)
        spool = Path(tempfile.mkdtemp(prefix="bench-spool-"))
        runners = [SinkRunner(RedisBroker("redis://127.0.0.1:1/0"), spool / str(i), 1 << 30, hub.instance,
                              hub.metrics) for i in range(sinks)]  # port 1: nothing listens, all is spooled
        hub.sinks.extend(r.put for r in runners)
        record = hub.open_stream({"host": "bench", "provider": "openai"}, {})
        tap = StreamTap("openai", 200, "text/event-stream", None)
        wire = body()
        start = time.perf_counter()
        for i in range(0, len(wire), 1024):
            for payload in tap.feed(wire[i:i + 1024]):
                hub.publish(record.id, payload)
        took = time.perf_counter() - start
        shutil.rmtree(spool, ignore_errors=True)
        return took * 1e6 / record.next_seq

    return min(asyncio.run(once()) for _ in range(rounds))


def throughput(make_broker, server_cls) -> float:
    """Events per second from `put` to confirmed by the broker."""
    work = Path(tempfile.mkdtemp(prefix="bench-sink-"))
    try:
        with server_cls(work / "server") as server:
            async def run() -> float:
                hub = Hub(capacity=EVENTS + 10)
                runner = SinkRunner(make_broker(server.url), work / "spool", 1 << 30, hub.instance, hub.metrics)
                runner.start()
                hub.sinks.append(runner.put)
                record = hub.open_stream({"host": "bench", "provider": "openai"}, {})
                start = time.perf_counter()
                for i in range(EVENTS - 1):
                    hub.publish(record.id, TextDelta(f"token {i} "))
                while runner.sent < EVENTS:
                    await asyncio.sleep(0.01)
                took = time.perf_counter() - start
                await runner.stop()
                return EVENTS / took

            return asyncio.run(run())
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure() -> list[str]:
    none, three = tap_with_sinks(0), tap_with_sinks(3)
    nats = throughput(lambda url: NatsBroker(f"{url}/bench"), NatsServer)
    redis = throughput(lambda url: RedisBroker(f"{url}?stream=bench"), DefaultRedis)
    print(f"sinks: tap {none:.1f} µs/event without, {three:.1f} with three; nats {nats:,.0f}/s, "
          f"redis {redis:,.0f}/s", file=sys.stderr)
    return [
        "## Sinks",
        "",
        "tests/bench/sinks.py. The per-chunk path (tap_path's stream, 1 KiB chunks, best of 5)",
        "with no sink and with three sinks attached to the hub (each event queued three times;",
        "the spooling and sending happen off this path). Then the events per second that",
        f"one sink moves from the hub into a real server on loopback ({EVENTS:,} events, confirmed).",
        "",
        "| measure | value |",
        "|---|---|",
        f"| tap path, no sink | {none:.1f} µs per event |",
        f"| tap path, three sinks | {three:.1f} µs per event ({(three / none - 1) * 100:+.0f}%) |",
        f"| into NATS JetStream | {nats:,.0f} events/s |",
        f"| into Redis Streams (appendfsync everysec) | {redis:,.0f} events/s |",
    ]

"""Replaying one stream out of a full ring, for `make bench` (tests/bench/__main__.py).

A hub whose ring holds `capacity` events of 200 interleaved streams, served by the real
API on a Unix socket in this process; the time is one client's whole GET of one
stream's 500 events, spread over the whole ring (request to the end of the response),
median of 15.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from proxy_core.api.handlers import make_app
from proxy_core.api.server import ApiHTTPServer, bind_private_unix_socket
from proxy_core.hub.hub import Hub
from proxy_core.payloads import StreamEnd, TextDelta

STREAMS = 200
MINE = 500  # events of the stream replayed
ROUNDS = 15


def filled_hub(capacity: int) -> tuple[Hub, str]:
    """A full ring of STREAMS interleaved streams, one of which has MINE events spread
    evenly over all of it; returns that one's id."""
    hub = Hub(capacity=capacity)
    mine = hub.open_stream({"host": "bench"}, {})
    others = [hub.open_stream({"host": "bench"}, {}) for _ in range(STREAMS - 1)]
    every = capacity // MINE
    for n in range(capacity):
        if n % every == 0:
            hub.publish(mine.id, TextDelta(f"token {n} "))
        else:
            hub.publish(others[n % len(others)].id, TextDelta(f"token {n} "))
    for r in [mine, *others]:
        hub.publish(r.id, StreamEnd(200, "stop", {}, ""))
    return hub, mine.id


async def get(path: str, target: str) -> int:
    reader, writer = await asyncio.open_unix_connection(path)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                 "Accept: application/x-ndjson\r\n\r\n".encode())
    size = 0
    while data := await reader.read(1 << 16):
        size += len(data)
    writer.close()
    return size


async def time_replays(capacity: int, tmp: Path) -> dict[str, float]:
    hub, sid = filled_hub(capacity)
    server = ApiHTTPServer(make_app(hub))
    server.add_socket(bind_private_unix_socket(tmp / f"api-{capacity}.sock"))
    targets = {"/v1/streams/{id}/events": f"/v1/streams/{sid}/events",
               "/v1/events?stream={id}&follow=0": f"/v1/events?stream={sid}&since=0&follow=0",
               "/v1/streams/{id}": f"/v1/streams/{sid}"}
    medians = {}
    try:
        for name, target in targets.items():
            times = []
            for _ in range(ROUNDS):
                start = time.perf_counter()
                await asyncio.wait_for(get(str(tmp / f"api-{capacity}.sock"), target), 30)
                times.append(time.perf_counter() - start)
            medians[name] = statistics.median(times)
    finally:
        server.stop()
    return medians


def measure() -> list[str]:
    """The replay section of docs/benchmarks.md."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="streamtap-bench-replay-") as tmp:
        for capacity in (10_000, 100_000, 1_000_000):
            medians = asyncio.run(time_replays(capacity, Path(tmp)))
            rows.append((capacity, medians))
            print(f"replay from a ring of {capacity}: " + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in medians.items()),
                  file=sys.stderr)
    names = list(rows[0][1])
    lines = [
        "## Replaying one stream from a full ring",
        "",
        f"tests/bench/replay.py: a ring full of {STREAMS} interleaved streams, one of which has {MINE}",
        "events spread evenly over all of it; that stream read back through the API on the Unix",
        "socket, request to the end of the response. Median of 15.",
        "",
        "| ring (events) | " + " | ".join(f"`{n}`" for n in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for capacity, medians in rows:
        lines.append(f"| {capacity:,} | "
                     + " | ".join(f"{medians[n] * 1e3:.2f} ms" for n in names) + " |")
    return lines


if __name__ == "__main__":
    print("\n".join(measure()))

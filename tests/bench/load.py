"""The benchmark's client: drives one workload, directly or through a proxy, and prints
its measurements as JSON. Runs as its own process (tests/bench/__main__.py starts it).

    stream --conns K --events N [--batch B] [--coding gzip]
                                  K concurrent SSE streams of N events each, B a write
    continuous --conns K --seconds S --events N --every US
                                  K connections, each streaming answer after answer (N
                                  events, one every US µs, keep-alive) for S seconds;
                                  per event its arrival time, and bytes received against
                                  the upstream's count of bytes sent
    big --mb M --coding X         one M MB stream
    short --rate R --seconds S    R new connections per second, one small request each

Each stream event carries `~C:I:T~` (see upstream.py): the client times each event from
T to the moment its bytes arrived here, and reports, per event, when that was.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import ssl
import sys
import time
import zlib

import h11

MARKER = re.compile(rb"~(\d+):(\d+):(\d+)~")
MARKER_MAX = 64  # a marker split across reads lies within this many trailing bytes


class Target:
    def __init__(self, host: str, port: int, proxy: tuple[str, int] | None, context: ssl.SSLContext) -> None:
        self.host, self.port, self.proxy, self.context = host, port, proxy, context

    async def connect(self, host: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A TLS connection to `host` (its name, or an IP for no SNI), through the proxy's
        CONNECT tunnel when there is one."""
        if self.proxy is None:
            address = "127.0.0.1" if host == "localhost" else host
            return await asyncio.open_connection(
                address, self.port, ssl=self.context, server_hostname=host, limit=2**20
            )
        reader, writer = await asyncio.open_connection(*self.proxy, limit=2**20)
        conn = h11.Connection(h11.CLIENT)
        authority = f"{host}:{self.port}"
        writer.write(conn.send(h11.Request(method="CONNECT", target=authority, headers=[("Host", authority)])))
        writer.write(conn.send(h11.EndOfMessage()))
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(4096))
            elif isinstance(event, h11.Response):
                if event.status_code != 200:
                    raise ConnectionError(f"CONNECT {authority}: {event.status_code}")
                break
            else:
                raise ConnectionError(f"CONNECT {authority}: unexpected {event!r}")
        await writer.start_tls(self.context, server_hostname=host)
        return reader, writer


async def request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, target: str, on_data
) -> int:
    """One request on an open connection; `on_data(bytes, arrival_ns)` per body read.
    Returns the body bytes received."""
    conn = h11.Connection(h11.CLIENT)
    headers = [("Host", host), ("Content-Type", "application/json"), ("Content-Length", "2")]
    writer.write(conn.send(h11.Request(method="POST", target=target, headers=headers)))
    writer.write(conn.send(h11.Data(data=b"{}")) + conn.send(h11.EndOfMessage()))
    received = 0
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await reader.read(2**20)
            if not data:
                raise ConnectionError("connection closed before the response ended")
            conn.receive_data(data)
        elif isinstance(event, h11.Response):
            if event.status_code != 200:
                raise ConnectionError(f"{target}: status {event.status_code}")
        elif isinstance(event, h11.Data):
            received += len(event.data)
            on_data(event.data, time.monotonic_ns())
        elif isinstance(event, h11.EndOfMessage):
            return received


class Markers:
    """Finds `~C:I:T~` markers in a byte stream, whatever its cuts."""

    def __init__(self, arrivals: dict[str, int], latencies: list[int]) -> None:
        self.arrivals, self.latencies = arrivals, latencies
        self._tail = b""

    def __call__(self, data: bytes, now: int) -> None:
        text = self._tail + data
        end = 0
        for m in MARKER.finditer(text):
            conn, index, sent = m.groups()
            self.record(int(conn), int(index), int(sent), now)
            end = m.end()
        self._tail = text[max(end, len(text) - MARKER_MAX) :]

    def record(self, conn: int, index: int, sent: int, now: int) -> None:
        self.arrivals[f"{conn}:{index}"] = now
        self.latencies.append(now - sent)


class Timeline(Markers):
    """Markers of streams whose indexes repeat (answer after answer): per event, its
    arrival time and latency, in arrival order."""

    def __init__(self, arrived: list[int], latencies: list[int]) -> None:
        super().__init__({}, latencies)
        self.arrived = arrived

    def record(self, conn: int, index: int, sent: int, now: int) -> None:
        self.arrived.append(now)
        self.latencies.append(now - sent)


async def stream_workload(target: Target, conns: int, events: int, batch: int = 1, coding: str = "identity") -> dict:
    arrivals: dict[str, int] = {}
    latencies: list[int] = []

    async def one(c: int) -> None:
        reader, writer = await target.connect(target.host)
        markers = Markers(arrivals, latencies)
        on_data = markers
        if coding == "gzip":  # the markers are in the decoded text
            unpack = zlib.decompressobj(31)
            on_data = lambda data, now: markers(unpack.decompress(data), now)  # noqa: E731
        try:
            await request(reader, writer, target.host,
                          f"/v1/chat/completions/sse?conn={c}&n={events}&batch={batch}&coding={coding}", on_data)
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(one(c) for c in range(conns)))
    wall = time.perf_counter() - start
    if len(arrivals) != conns * events:
        raise SystemExit(f"expected {conns * events} events, got {len(arrivals)}")
    return {"wall": wall, "events": len(arrivals), "arrivals": arrivals, "latency_ns": latencies}


async def continuous_workload(target: Target, conns: int, seconds: float, events: int, every_us: int) -> dict:
    """Answers back to back on each of `conns` kept-alive connections until `seconds`
    have passed (the answers under way then are finished). The first answers are of
    staggered lengths, so that the connections' answers do not all end at once."""
    run = f"{os.getpid()}-{time.monotonic_ns()}"
    arrived: list[int] = []
    latencies: list[int] = []
    received = answers = 0
    opened = [await target.connect(target.host) for _ in range(conns)]
    print("ready", file=sys.stderr, flush=True)  # the bench times its broker kill from here
    start_ns = time.monotonic_ns()
    deadline = start_ns + int(seconds * 1e9)

    async def one(c: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal received, answers
        n = max(1, events * (c + 1) // conns)
        try:
            while time.monotonic_ns() < deadline:
                timeline = Timeline(arrived, latencies)  # this stream's own split-marker tail
                got = await request(reader, writer, target.host,
                                    f"/v1/chat/completions/sse?conn={c}&n={n}&every={every_us}&run={run}", timeline)
                received += got  # not `received += await ...`: that reads `received` before the await
                answers += 1
                n = events
        finally:
            writer.close()

    await asyncio.gather(*(one(c, r, w) for c, (r, w) in enumerate(opened)))
    end_ns = time.monotonic_ns()
    direct = Target(target.host, target.port, None, target.context)
    reader, writer = await direct.connect(target.host)
    body: list[bytes] = []
    try:
        await request(reader, writer, target.host, f"/sent?run={run}", lambda data, now: body.append(data))
    finally:
        writer.close()
    sent = json.loads(b"".join(body))
    return {"wall": (end_ns - start_ns) / 1e9, "start_ns": start_ns, "end_ns": end_ns, "arrived_ns": arrived,
            "latency_ns": latencies,
            "bytes_received": received, "bytes_sent": sent["bytes"], "answers": answers,
            "answers_sent": sent["answers"], "events": len(arrived), "events_sent": sent["events"]}


async def big_workload(target: Target, mb: int, coding: str) -> dict:
    reader, writer = await target.connect(target.host)
    start = time.perf_counter()
    try:
        received = await request(reader, writer, target.host, f"/v1/chat/completions/big?mb={mb}&coding={coding}",
                                 lambda data, now: None)
    finally:
        writer.close()
    return {"wall": time.perf_counter() - start, "bytes": received}


async def short_workload(target: Target, host: str, rate: float, seconds: float) -> dict:
    """Open-loop: a new connection every 1/rate s, whether or not earlier ones finished."""
    latencies: list[int] = []
    failures: list[str] = []

    async def one() -> None:
        started = time.monotonic_ns()
        try:
            reader, writer = await target.connect(host)
            try:
                await request(reader, writer, host, "/short", lambda data, now: None)
            finally:
                writer.close()
            latencies.append(time.monotonic_ns() - started)
        except (OSError, ssl.SSLError) as e:
            failures.append(repr(e))

    total = int(rate * seconds)
    tasks = []
    start = time.perf_counter()
    for i in range(total):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    return {"wall": time.perf_counter() - start, "requests": len(latencies), "failures": failures,
            "latency_ns": latencies}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True, help="the upstream's port")
    parser.add_argument("--proxy", help="HOST:PORT of the proxy; none for direct")
    parser.add_argument("--cafile", action="append", required=True)
    parser.add_argument("--host", default="localhost", help="the routed name the upstream answers to")
    sub = parser.add_subparsers(dest="workload", required=True)
    stream = sub.add_parser("stream")
    stream.add_argument("--conns", type=int, default=1)
    stream.add_argument("--events", type=int, default=10_000)
    stream.add_argument("--batch", type=int, default=1, help="events a write")
    stream.add_argument("--coding", default="identity", help="identity or gzip (flushed at each write)")
    continuous = sub.add_parser("continuous")
    continuous.add_argument("--conns", type=int, default=20)
    continuous.add_argument("--seconds", type=float, default=15)
    continuous.add_argument("--events", type=int, default=100)
    continuous.add_argument("--every", type=int, default=20_000, help="µs between an answer's events")
    big = sub.add_parser("big")
    big.add_argument("--mb", type=int, default=50)
    big.add_argument("--coding", default="identity")
    short = sub.add_parser("short")
    short.add_argument("--rate", type=float, default=200)
    short.add_argument("--seconds", type=float, default=5)
    short.add_argument("--passthrough-host", default="127.0.0.2")
    args = parser.parse_args()

    context = ssl.create_default_context()
    for cafile in args.cafile:
        context.load_verify_locations(cafile)
    proxy = None
    if args.proxy:
        host, _, port = args.proxy.rpartition(":")
        proxy = (host, int(port))
    target = Target(args.host, args.port, proxy, context)
    if args.workload == "stream":
        work = stream_workload(target, args.conns, args.events, args.batch, args.coding)
    elif args.workload == "continuous":
        work = continuous_workload(target, args.conns, args.seconds, args.events, args.every)
    elif args.workload == "big":
        work = big_workload(target, args.mb, args.coding)
    else:
        work = short_workload(target, args.passthrough_host, args.rate, args.seconds)
    import gc

    import uvloop

    gc.disable()  # an instrument: its own collector's pauses would read as the proxy's delay
    result = uvloop.run(work)
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()

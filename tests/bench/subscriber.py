"""An API reader for the benchmark: follows /v1/events on the Unix socket, as SSE (what
most readers use), notes when each event's marker arrived, and stops after the given
number of stream.end events. Prints "ready" once following, then its findings as JSON.

Run: python -m tests.bench.subscriber SOCKET STREAMS
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import h11

from tests.bench.load import Markers

STREAM_END = b'"type":"stream.end"'


async def follow(socket_path: str, streams: int) -> dict:
    reader, writer = await asyncio.open_unix_connection(socket_path, limit=2**20)
    conn = h11.Connection(h11.CLIENT)
    writer.write(conn.send(h11.Request(method="GET", target="/v1/events?since=0", headers=[("Host", "streamtap")])))
    writer.write(conn.send(h11.EndOfMessage()))
    arrivals: dict[str, int] = {}
    latencies: list[int] = []
    markers = Markers(arrivals, latencies)
    ended = 0
    tail = b""  # a stream.end split across reads
    while ended < streams:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await reader.read(2**20)
            if not data:
                raise SystemExit(f"the API closed the stream after {ended} of {streams} stream.end events")
            conn.receive_data(data)
        elif isinstance(event, h11.Response):
            if event.status_code != 200:
                raise SystemExit(f"/v1/events: status {event.status_code}")
            print("ready", file=sys.stderr, flush=True)
        elif isinstance(event, h11.Data):
            now = time.monotonic_ns()
            markers(event.data, now)
            text = tail + event.data
            ended += text.count(STREAM_END)
            tail = text[1 - len(STREAM_END) :]
        elif isinstance(event, h11.EndOfMessage):
            break
    writer.close()
    return {"arrivals": arrivals, "latency_ns": latencies}


if __name__ == "__main__":
    import gc

    import uvloop

    gc.disable()  # an instrument: its own collector's pauses would read as streamtap's delay

    json.dump(uvloop.run(follow(sys.argv[1], int(sys.argv[2]))), sys.stdout)

"""The benchmark's provider stand-in: a loopback HTTPS server in its own process.

    /sse?conn=C&n=N      an OpenAI chat stream of N text deltas, each written on its own
                         as a real provider flushes each token; delta I carries the marker
                         `~C:I:T~`, T being time.monotonic_ns() just before the write.
                         `&every=US`: one delta every US µs (paced, as a model
                         generates) rather than as fast as it can; `&run=R`: count the
                         body bytes written under R
    /sent?run=R          what was written under R: {"bytes": ..., "answers": ..., "events": ...}
    /big?mb=M&coding=X   M MB of the same kind of SSE (decoded size), sent in 64 KiB writes,
                         content-encoded with X (identity or gzip)
    /short               a small JSON answer

It answers as `localhost` on 127.0.0.1 and as 127.0.0.2 (the unrouted host), same port.

Run: python -m tests.bench.upstream CERT KEY; it prints its port, then serves until killed.
CLOCK_MONOTONIC is system-wide on Linux, so the markers time events across processes.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import random
import ssl
import sys
import time
import zlib
from urllib.parse import parse_qs, urlsplit

import h11

WRITE_SIZE = 64 * 1024
UNROUTED = "127.0.0.2"  # the passthrough workload's host; `localhost` is the routed one
BIG_DELTA_CHARS = 400  # text per event of /big: about 520 bytes of SSE each

SSE_HEADERS = [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")]
SENT: dict[str, dict[str, int]] = {}  # run -> body bytes, answers and deltas written (/sent)


def chat_chunk(content: str, finish: str | None = None) -> bytes:
    delta = {"content": content} if finish is None else {}
    chunk = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gpt-bench",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"


END = chat_chunk("", "stop") + b"data: [DONE]\n\n"
# chat_chunk()'s bytes around the text, so that timing an event costs one formatting
TIMED_TEMPLATE = tuple(chat_chunk("\0").split(b"\\u0000"))


def big_body(mb: int) -> bytes:
    """`mb` MB of SSE whose text is varied enough that gzip has work to do."""
    rng = random.Random(mb)
    words = ["stream", "token", "proxy", "answer", "über", "naïve", "模型", "🙂", "delta", "chunk", "the", "of"]
    parts: list[bytes] = []
    size = 0
    i = 0
    while size < mb * 1_000_000:
        text = f"~0:{i}:0~ " + " ".join(rng.choice(words) for _ in range(BIG_DELTA_CHARS // 6))
        event = chat_chunk(text)
        parts.append(event)
        size += len(event)
        i += 1
    return b"".join(parts) + END


class Bodies:
    """Pre-built /big bodies: building them is not what is measured."""

    def __init__(self) -> None:
        self._cache: dict[tuple[int, str], bytes] = {}

    def get(self, mb: int, coding: str) -> bytes:
        key = (mb, coding)
        if key not in self._cache:
            plain = self._cache.get((mb, "identity")) or big_body(mb)
            self._cache[(mb, "identity")] = plain
            self._cache[key] = gzip.compress(plain, 6) if coding == "gzip" else plain
        return self._cache[key]


BODIES = Bodies()


async def serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    conn = h11.Connection(h11.SERVER)
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(WRITE_SIZE)
                conn.receive_data(data)
                if not data and conn.their_state is not h11.DONE:
                    return
                continue
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.EndOfMessage):
                await respond(conn, writer, request.target.decode())
                if conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                return
    except (ConnectionError, h11.RemoteProtocolError, ssl.SSLError):
        return
    finally:
        writer.close()


async def respond(conn: h11.Connection, writer: asyncio.StreamWriter, target: str) -> None:
    url = urlsplit(target)
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    if url.path.endswith("/sse"):
        # batch=K: K events a write; coding=gzip: one gzip stream, flushed at each write,
        # as a provider compresses a streamed answer.
        batch, gzipped = max(1, int(query.get("batch", "1"))), query.get("coding") == "gzip"
        headers = [*SSE_HEADERS, ("Content-Encoding", "gzip")] if gzipped else SSE_HEADERS
        writer.write(conn.send(h11.Response(status_code=200, headers=headers)))
        packer = zlib.compressobj(6, zlib.DEFLATED, 31) if gzipped else None
        stream, n = query.get("conn", "0"), int(query.get("n", "100"))
        every = int(query.get("every", "0")) / 1e6
        sent = SENT.setdefault(query["run"], {"bytes": 0, "answers": 0, "events": 0}) if "run" in query else None
        head, tail = TIMED_TEMPLATE
        start = time.monotonic()
        for first in range(0, n, batch):
            if every and (delay := start + first * every - time.monotonic()) > 0:
                await asyncio.sleep(delay)
            now = time.monotonic_ns()
            events = b"".join(b"%s~%s:%d:%d~ tok%s" % (head, stream.encode(), i, now, tail)
                              for i in range(first, min(n, first + batch)))
            if packer is not None:
                events = packer.compress(events) + packer.flush(zlib.Z_SYNC_FLUSH)
            writer.write(conn.send(h11.Data(data=events)))
            if sent is not None:
                sent["bytes"] += len(events)
                sent["events"] += min(n, first + batch) - first
            await writer.drain()
        end = END if packer is None else packer.compress(END) + packer.flush()
        writer.write(conn.send(h11.Data(data=end)))
        if sent is not None:
            sent["bytes"] += len(end)
            sent["answers"] += 1
    elif url.path.endswith("/sent"):
        body = json.dumps(SENT.get(query.get("run", ""), {"bytes": 0, "answers": 0, "events": 0})).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        writer.write(conn.send(h11.Response(status_code=200, headers=headers)))
        writer.write(conn.send(h11.Data(data=body)))
    elif url.path.endswith("/big"):
        coding = query.get("coding", "identity")
        body = BODIES.get(int(query.get("mb", "5")), coding)
        headers = [*SSE_HEADERS, ("Content-Length", str(len(body)))]
        if coding != "identity":
            headers.append(("Content-Encoding", coding))
        writer.write(conn.send(h11.Response(status_code=200, headers=headers)))
        view = memoryview(body)
        for at in range(0, len(body), WRITE_SIZE):
            writer.write(conn.send(h11.Data(data=view[at : at + WRITE_SIZE])))
            await writer.drain()
    else:
        body = b'{"ok":true}'
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        writer.write(conn.send(h11.Response(status_code=200, headers=headers)))
        writer.write(conn.send(h11.Data(data=body)))
    writer.write(conn.send(h11.EndOfMessage()))
    await writer.drain()


async def main(cert: str, key: str, prebuild: list[int]) -> None:
    for mb in prebuild:
        BODIES.get(mb, "gzip")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    routed = await asyncio.start_server(serve_connection, "127.0.0.1", 0, ssl=context, backlog=1024)
    port = routed.sockets[0].getsockname()[1]
    # The unrouted host: its own loopback address, so that no proxy mistakes one for the other.
    unrouted = await asyncio.start_server(serve_connection, UNROUTED, port, ssl=context, backlog=1024)
    print(port, flush=True)
    await asyncio.gather(routed.serve_forever(), unrouted.serve_forever())


if __name__ == "__main__":
    import uvloop

    uvloop.run(main(sys.argv[1], sys.argv[2], [int(mb) for mb in sys.argv[3:]]))

"""The per-chunk path in-process, for `make bench` (tests/bench/__main__.py).

Measures what runs on the proxy's event loop for every chunk: content decoding, SSE
framing, the OpenAI normalizer and publishing into the hub.
"""

from __future__ import annotations

import sys
import time

from proxy_core.hub.hub import Hub
from proxy_core.pipeline.tap import StreamTap
from tests.support.fixtures import encode, header_for, openai_chat_text

REPEAT = 400  # the fixture's answer, 400 times over: ~1.2 MB of SSE


def body(repeat: int = REPEAT) -> bytes:
    one = openai_chat_text().body
    frames = one.split(b"\n\n")[1:7]  # the six content chunks
    return b"\n\n".join(frames * repeat) + b"\n\ndata: [DONE]\n\n"


def run_once(wire: bytes, coding: str, chunk: int) -> tuple[float, int]:
    hub = Hub(capacity=100_000)
    record = hub.open_stream({"host": "bench"}, {})
    tap = StreamTap("openai", 200, "text/event-stream", header_for(coding))
    start = time.perf_counter()
    for i in range(0, len(wire), chunk):
        for payload in tap.feed(wire[i : i + chunk]):
            hub.publish(record.id, payload)
    for payload in tap.close():
        hub.publish(record.id, payload)
    return time.perf_counter() - start, record.next_seq


def best_of(n: int, *args) -> tuple[float, int]:
    return min(run_once(*args) for _ in range(n))


def measure() -> list[str]:
    """The tap path's section of docs/benchmarks.md."""
    plain = body()
    rows = []
    for coding in ["identity", "gzip", "br", "zstd"]:
        wire = encode(plain, coding)
        for chunk in [64, 1024, 16384]:
            seconds, events = best_of(3, wire, coding, chunk)
            rows.append((coding, chunk, len(wire), len(plain) / seconds / 1e6, events / seconds, seconds * 1e6 / events))
            print(f"{coding:8} chunk {chunk:6}: {rows[-1][3]:7.1f} MB/s decoded, {rows[-1][4]:9.0f} events/s", file=sys.stderr)
    lines = [
        "## The tap path alone",
        "",
        "tests/bench/tap_path.py: an OpenAI chat-completions stream of "
        f"{len(plain) / 1e6:.2f} MB ({REPEAT * 6} text deltas with multibyte text) fed in-process through",
        "the tap — content decoding, SSE framing, the OpenAI normalizer and publishing into the",
        "hub (sequencing, the envelope's JSON, the ring) — in fixed-size chunks. Best of 3 runs.",
        "",
        "| encoding | chunk bytes | wire bytes | MB/s (decoded body) | events/s | µs per event |",
        "|---|---|---|---|---|---|",
    ]
    for coding, chunk, wire_len, mbps, eps, per_event in rows:
        lines.append(f"| {coding} | {chunk} | {wire_len} | {mbps:.1f} | {eps:,.0f} | {per_event:.1f} |")
    small, _ = best_of(3, body(REPEAT), "identity", 1024)
    large, _ = best_of(3, body(REPEAT * 4), "identity", 1024)
    lines += [
        "",
        f"Linearity: the same stream 4x longer takes {large / small:.2f}x the time "
        f"({small * 1e3:.0f} ms vs {large * 1e3:.0f} ms, identity, 1 KiB chunks).",
    ]
    return lines

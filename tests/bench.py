"""`make bench`: throughput of the per-chunk path, written to docs/benchmarks.md.

Measures what runs on the proxy's event loop for every chunk: content decoding, SSE
framing, the OpenAI normalizer and publishing into the hub.
"""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path

from proxy_core.hub import Hub
from proxy_core.tap import StreamTap

from .support.fixtures import encode, header_for, openai_chat_text

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


def proxy_bench(loop: str, workers: int = 8, per_worker: int = 40) -> tuple[float, int, int]:
    """Requests through a real `streamtap run` on `loop`: (seconds, requests, events)."""
    import ssl
    import tempfile
    import threading

    import httpx

    from proxy_core.client import get_json

    from .support.pki import make_pki
    from .support.proc import StreamtapProcess
    from .support.upstream import Reply, Upstream

    chat = openai_chat_text().body
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        pki = make_pki(work / "pki", ["api.openai.com"])
        with Upstream(pki, lambda r: Reply(chunks=[chat[i : i + 64] for i in range(0, len(chat), 64)])) as up:
            proc = StreamtapProcess(
                ["--certs", str(work / "certs"), "--api-socket", str(work / "api.sock"), "--loop", loop,
                 "--set", f"ssl_verify_upstream_trusted_ca={pki.ca_cert}",
                 "--set", f"streamtap_connect_to=api.openai.com:443=127.0.0.1:{up.port}"],
                cwd=work,
            )
            ctx = ssl.create_default_context(cafile=str(work / "certs" / "mitmproxy-ca-cert.pem"))

            def worker() -> None:
                with httpx.Client(proxy=proc.proxy_url, verify=ctx) as client:
                    for _ in range(per_worker):
                        assert client.post("https://api.openai.com/v1/chat/completions", content=b"{}").content == chat

            try:
                threads = [threading.Thread(target=worker) for _ in range(workers)]
                start = time.perf_counter()
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                seconds = time.perf_counter() - start
                events = get_json(str(work / "api.sock"), "/healthz")["last_offset"]
            finally:
                proc.stop()
    return seconds, workers * per_worker, events


def main(out: str) -> None:
    plain = body()
    rows = []
    for coding in ["identity", "gzip", "br", "zstd"]:
        wire = encode(plain, coding)
        for chunk in [64, 1024, 16384]:
            seconds, events = best_of(3, wire, coding, chunk)
            rows.append((coding, chunk, len(wire), len(plain) / seconds / 1e6, events / seconds, seconds * 1e6 / events))
            print(f"{coding:8} chunk {chunk:6}: {rows[-1][3]:7.1f} MB/s decoded, {rows[-1][4]:9.0f} events/s", file=sys.stderr)
    lines = [
        "# Benchmarks",
        "",
        "`make bench` (tests/bench.py): an OpenAI chat-completions stream of "
        f"{len(plain) / 1e6:.2f} MB ({REPEAT * 6} text deltas with multibyte text) fed through the",
        "per-chunk path — content decoding, SSE framing, the OpenAI normalizer and publishing",
        "into the hub — in fixed-size chunks. Best of 3 runs, one core.",
        "",
        f"Machine: {platform.machine()}, Python {platform.python_version()}, {platform.system()}.",
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
    loops = {}
    for loop in ("asyncio", "uvloop"):
        loops[loop] = min((proxy_bench(loop) for _ in range(2)), key=lambda r: r[0])
        print(f"proxy on {loop}: {loops[loop][1] / loops[loop][0]:.0f} requests/s", file=sys.stderr)
    lines += [
        "",
        "## Through the proxy: asyncio and uvloop",
        "",
        "A real `streamtap run --loop LOOP` between 8 client threads (httpx, keep-alive) and a",
        "loopback HTTPS upstream streaming the chat fixture in 64-byte chunks: 320 decrypted,",
        "decoded and published requests. Best of 2 runs. The clients and the upstream share",
        "the machine's cores with the proxy, so the figures compare the loops, no more.",
        "",
        "| loop | seconds | requests/s | events/s |",
        "|---|---|---|---|",
    ]
    for loop, (seconds, requests, events) in loops.items():
        lines.append(f"| {loop} | {seconds:.2f} | {requests / seconds:.0f} | {events / seconds:,.0f} |")
    ratio = loops["asyncio"][0] / loops["uvloop"][0]
    lines += ["", f"uvloop / asyncio throughput: {ratio:.2f}x. `streamtap run` uses uvloop when it is installed."]
    lines += [
        "",
        "What it means: a provider streams at most a few kB/s per answer, so one core's",
        "share of the proxy spent in the tap stays far below 1% even for hundreds of",
        "concurrent streams. The cost is linear in the bytes (no buffer is rescanned).",
    ]
    Path(out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/benchmarks.md")

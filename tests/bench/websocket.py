"""WebSocket figures for `make bench` (or `python -m tests.bench.websocket [OUT.md]`):

1. The per-message cost of the WebSocket tap (WebSocketCapture.websocket_message: the
   pipeline, the Responses normalizer, publishing into the hub, trimming the flow's
   messages), in-process, beside the HTTP tap's per-event cost (tap_path.py).
2. Memory: 10,000 answers over one WebSocket through a real `streamtap run` (and, as the
   baseline, a plain mitmdump, which keeps every message of a live connection): the
   proxy's RSS sampled every 1,000 answers.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from mitmproxy.websocket import Opcode, WebSocketMessage  # mitmproxy's own (wsproto's) opcodes

from proxy_core.hub.hub import Hub
from proxy_core.mitm.routing import PROVIDER
from proxy_core.mitm.websocket_capture import WebSocketCapture
from proxy_core.pipeline.tap import StreamTap
from tests.bench import tap_path
from tests.support import websocket as ws
from tests.support.fixtures import header_for
from tests.support.pki import make_pki
from tests.support.proc import StreamtapProcess
from tests.support.ws_upstream import WebSocketUpstream

ANSWERS = 10_000
SAMPLE_EVERY = 1_000
PARTS = ["Voilà", " — the naïve café", " serves 🎉🇫🇷", " and Ωmega."]  # 4 deltas: 7 server messages


def _fake_flow(flow_id: str) -> Any:
    """What websocket_message reads of an HTTPFlow, without a proxy around it."""
    request = SimpleNamespace(method="GET", pretty_url="https://bench/v1/responses", pretty_host="bench",
                              path="/v1/responses", http_version="HTTP/1.1", headers=_Headers(), query={},
                              raw_content=b"")
    response = SimpleNamespace(status_code=101, headers=_Headers())
    return SimpleNamespace(id=flow_id, metadata={PROVIDER: "openai"}, request=request, response=response,
                           websocket=SimpleNamespace(messages=[], closed_by_client=True, close_code=1000,
                                                     close_reason=""),
                           client_conn=SimpleNamespace(peername=("127.0.0.1", 1)))


class _Headers(dict):
    def items(self, multi: bool = False):  # type: ignore[override]
        return super().items()


def per_message(answers: int = 2_000) -> tuple[float, float, int]:
    """µs per message through the WebSocket tap (with the hub), and per event."""
    messages = []
    for n in range(answers):
        messages.append(WebSocketMessage(Opcode.TEXT, True, ws.dumps(ws.response_create(previous=f"r{n}"))))
        messages += [WebSocketMessage(Opcode.TEXT, False, ws.dumps(e)) for e in ws.text_answer(PARTS, f"r{n}")]
    best = float("inf")
    events = 0
    for _ in range(3):
        hub = Hub(capacity=100_000)
        capture = WebSocketCapture(hub)
        flow = _fake_flow("bench")
        capture.websocket_start(flow)
        start = time.perf_counter()
        for m in messages:
            flow.websocket.messages.append(m)
            capture.websocket_message(flow)
        best = min(best, time.perf_counter() - start)
        events = hub.last_offset
    return best * 1e6 / len(messages), best * 1e6 / events, len(messages)


def http_per_event() -> float:
    wire = tap_path.body()
    best = float("inf")
    for _ in range(3):
        hub = Hub(capacity=100_000)
        record = hub.open_stream({"host": "bench"}, {})
        tap = StreamTap("openai", 200, "text/event-stream", header_for("identity"))
        start = time.perf_counter()
        for i in range(0, len(wire), 1024):
            for payload in tap.feed(wire[i : i + 1024]):
                hub.publish(record.id, payload)
        best = min(best, time.perf_counter() - start)
    return best * 1e6 / record.next_seq


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


async def _session(url: str, proxy: str, ca: str, pid: int, answers: int) -> list[tuple[int, int]]:
    from websockets.asyncio.client import connect

    samples = []
    async with connect(url, proxy=proxy, ssl=ssl.create_default_context(cafile=ca), max_size=None) as conn:
        for n in range(1, answers + 1):
            await conn.send(ws.dumps(ws.response_create(previous=f"r{n - 1}")).decode())
            while '"response.completed"' not in await conn.recv():
                pass
            if n == 100 or n % SAMPLE_EVERY == 0:
                samples.append((n, rss(pid)))
    return samples


def _script(request: dict[str, Any], path: str) -> list[Any]:
    return ws.text_answer(PARTS, request.get("previous_response_id", "r"))


def memory(answers: int = ANSWERS) -> dict[str, list[tuple[int, int]]]:
    out: dict[str, list[tuple[int, int]]] = {}
    with tempfile.TemporaryDirectory(prefix="streamtap-bench-ws-") as tmp:
        work = Path(tmp)
        pki = make_pki(work / "pki", ["127.0.0.1"])
        with WebSocketUpstream(pki, _script) as upstream:
            url = f"wss://127.0.0.1:{upstream.port}/v1/responses"
            proc = StreamtapProcess(
                ["--certs", str(work / "certs"), "--api-socket", str(work / "run" / "api.sock"),
                 "--route", "127.0.0.1:^/v1/responses=openai",
                 "--set", f"ssl_verify_upstream_trusted_ca={pki.ca_cert}",
                 "--set", "streamtap_buffer_events=10000"], cwd=work)
            try:
                ca = str(work / "certs" / "mitmproxy-ca-cert.pem")
                out["streamtap run (10,000-event ring)"] = asyncio.run(
                    _session(url, proc.proxy_url, ca, proc.proc.pid, answers))
            finally:
                proc.stop()
            confdir = work / "mitmdump"
            port = _free_port()
            dump = subprocess.Popen(
                [str(Path(sys.executable).with_name("mitmdump")), "-q", "--listen-host", "127.0.0.1",
                 "--listen-port", str(port), "--set", f"confdir={confdir}",
                 "--set", f"ssl_verify_upstream_trusted_ca={pki.ca_cert}"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                ca_file = confdir / "mitmproxy-ca-cert.pem"
                deadline = time.monotonic() + 30
                while not (ca_file.exists() and _connectable(port)):
                    if time.monotonic() > deadline:
                        raise RuntimeError("mitmdump did not start")
                    time.sleep(0.05)
                out["plain mitmdump"] = asyncio.run(
                    _session(url, f"http://127.0.0.1:{port}", str(ca_file), dump.pid, answers))
            finally:
                dump.terminate()
                dump.wait(10)
    return out


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _connectable(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
        return True
    except OSError:
        return False


def measure(answers: int = ANSWERS) -> list[str]:
    ws_msg, ws_event, count = per_message()
    http_event = http_per_event()
    print(f"websocket tap: {ws_msg:.1f} µs/message, {ws_event:.1f} µs/event; http tap {http_event:.1f} µs/event",
          file=sys.stderr)
    lines = [
        "## WebSocket: the tap per message",
        "",
        f"tests/bench/websocket.py: {count:,} messages (Responses over WebSocket: per answer one",
        f"response.create, then {len(ws.text_answer(PARTS))} server messages with {len(PARTS)} text deltas) through",
        "WebSocketCapture.websocket_message in-process: JSON, the pipeline, the Responses normalizer,",
        "publishing into the hub, trimming the flow's messages. Best of 3. Beside it, the HTTP tap",
        "(tap_path.py's stream, identity, 1 KiB chunks).",
        "",
        "| path | µs per message | µs per event |",
        "|---|---|---|",
        f"| WebSocket tap | {ws_msg:.1f} | {ws_event:.1f} |",
        f"| HTTP tap | — | {http_event:.1f} |",
    ]
    mem = memory(answers)
    lines += [
        "",
        f"## WebSocket: memory over {answers:,} answers on one connection",
        "",
        "The proxy's RSS (MB) after n answers on one WebSocket (7 server messages each), sampled",
        "by the client; plain mitmdump keeps every message of a live connection on its flow.",
        "",
        "| answers | " + " | ".join(mem) + " |",
        "|---|" + "---|" * len(mem),
    ]
    columns = list(mem.values())
    for i, (n, _) in enumerate(columns[0]):
        lines.append(f"| {n:,} | " + " | ".join(f"{c[i][1] / 2**20:.1f}" for c in columns) + " |")
    for name, samples in mem.items():
        first = next(r for n, r in samples if n >= 2_000)
        print(f"{name}: {first / 2**20:.1f} MB at 2,000 answers, {samples[-1][1] / 2**20:.1f} MB at "
              f"{samples[-1][0]:,}", file=sys.stderr)
    return lines


if __name__ == "__main__":
    report = measure(int(os.environ.get("BENCH_WS_ANSWERS", ANSWERS)))
    print("\n".join(report))
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text("\n".join(report) + "\n")

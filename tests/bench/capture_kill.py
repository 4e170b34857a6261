"""What a SIGKILL costs a capture under load (docs/config.md, capture.dir): ten streams
at up to 2,000 events/s each through a real `streamtap run` with a reader following its
API, killed mid-stream; per stream, the text deltas its client had received that the
capture lacks.

    python -m tests.bench.capture_kill [FLUSH_MS ...] [--runs N] [--clients K]

With decode_window 0 a chunk is decoded (and its events queued for the writer) before
it is forwarded, so what a client received was published first.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import tempfile
import time
import uuid
from pathlib import Path

from proxy_core.api.serve_capture import read_capture
from tests.support import fixtures
from tests.support.pki import make_pki
from tests.support.proc import StreamtapProcess
from tests.support.streaming import Follower, StreamingClient
from tests.support.upstream import Reply, Request, Upstream

HOST = "api.openai.com"
BODY = fixtures.openai_chat_text(parts=fixtures.ANSWER_PARTS * 4000).body  # 24,000 deltas
EVENTS = [e + b"\n\n" for e in BODY.split(b"\n\n") if e]
CHUNKS = [b"".join(EVENTS[i : i + 20]) for i in range(0, len(EVENTS), 20)]


def fast(request: Request) -> Reply:
    return Reply(chunks=CHUNKS, delay=0.002)


def run_once(work: Path, flush_ms: int, clients: int) -> list[int]:
    pki = make_pki(work / "pki", [HOST])
    capture = work / "captures"
    with Upstream(pki, fast) as upstream:
        proc = StreamtapProcess(
            ["--certs", str(work / "certs"), "--api-socket", str(work / "api.sock"),
             "--set", f"ssl_verify_upstream_trusted_ca={pki.ca_cert}",
             "--set", f"streamtap_connect_to={HOST}:443=127.0.0.1:{upstream.port}",
             "--set", f"streamtap_capture_dir={capture}", "--set", f"streamtap_capture_flush_ms={flush_ms}",
             "--set", "streamtap_decode_window=0", "--set", "streamtap_subscriber_queue=1000000"],
            cwd=work,
        )
        Follower(str(work / "api.sock")).start()  # the proxy's usual company: it costs the loop CPU
        ca = work / "certs" / "mitmproxy-ca-cert.pem"
        streams = [StreamingClient(proc.proxy_port, ca, HOST, "/v1/chat/completions", uuid.uuid4().hex[:10])
                   for _ in range(clients)]
        for s in streams:
            s.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # well into every stream (~3,000 events on disk)
            files = list(capture.glob("*.jsonl")) if capture.exists() else []
            if len(files) == clients and all(p.stat().st_size > 450_000 for p in files):
                break
            time.sleep(0.01)
        os.kill(proc.proc.pid, signal.SIGKILL)
        proc.proc.wait()
        for s in streams:
            s.join(10)
    events = read_capture(capture)
    tag_of = {e["stream"]: e["request"]["tag"] for e in events if e["type"] == "stream.start"}
    captured = {tag: 0 for tag in tag_of.values()}
    for e in events:
        captured[tag_of[e["stream"]]] += e["type"] == "text.delta"
    # Every content chunk but the first (the role's "") is one text.delta.
    return [bytes(s.received).count(b'"content":"') - 1 - captured.get(s.tag, 0) for s in streams]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("flush_ms", type=int, nargs="*", default=[0, 100])
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--clients", type=int, default=10)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the torn last lines the kill leaves
    for flush_ms in args.flush_ms:
        worst = []
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory() as work:
                lost = run_once(Path(work), flush_ms, args.clients)
            worst.append(max(lost))
            print(f"flush_ms={flush_ms}: received but not captured, per stream: {lost}", flush=True)
        print(f"flush_ms={flush_ms}: at most {max(worst)} events of one stream in {args.runs} kills", flush=True)


if __name__ == "__main__":
    main()

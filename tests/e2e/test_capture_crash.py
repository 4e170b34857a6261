"""Crash safety of captures, end to end: a real `streamtap run` writing capture.dir is
killed with SIGKILL while ten clients stream through it, and what it left on disk is
read back with the capture reader and with `streamtap replay --serve`."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from proxy_core.api.serve_capture import read_capture
from proxy_core.hub.envelope import dumps, envelope_dict
from proxy_core.payloads import payload_from_dict
from tests.support import fixtures
from tests.support.pki import make_pki
from tests.support.proc import STREAMTAP, StreamtapProcess
from tests.support.streaming import Follower, StreamingClient
from tests.support.subscriber import TERMINAL
from tests.support.upstream import Reply, Request, Upstream

from ..support.api_http import UnixHTTPConnection, get_json

pytestmark = pytest.mark.e2e

HOST = "api.openai.com"
CLIENTS = 10
FLUSH_MS = 50
# U+2028 is legal raw in JSON and ends a line for str.splitlines(): a reader must not split there.
LONG = fixtures.openai_chat_text(parts=[*fixtures.ANSWER_PARTS, " line\u2028separator"] * 50)  # 350 deltas
EVENTS_BEFORE_KILL = 8  # per stream, on disk, before the kill


def one_sse_event_per_chunk(request: Request) -> Reply:
    # 20 ms apart: a stream lasts about 7 s, the kill comes well inside it.
    return Reply(chunks=[e + b"\n\n" for e in LONG.body.split(b"\n\n") if e], delay=0.02)


def complete_lines(path: Path) -> list[dict[str, Any]]:
    """The events of a capture file being written: its complete lines only."""
    data = path.read_bytes()
    return [json.loads(line) for line in data[: data.rfind(b"\n") + 1].splitlines()]


def streams_on_disk(capture: Path) -> dict[str, list[dict[str, Any]]]:
    return {p.name: complete_lines(p) for p in capture.glob("*.jsonl")}


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)  # polling files: there is nothing to block on


def test_sigkill_mid_stream_leaves_a_readable_prefix_of_every_stream(tmp_path, caplog):
    pki = make_pki(tmp_path / "pki", [HOST])
    capture = tmp_path / "captures"
    sock = str(tmp_path / "api.sock")
    with Upstream(pki, one_sse_event_per_chunk) as upstream:
        proc = StreamtapProcess(
            ["--certs", str(tmp_path / "certs"), "--api-socket", sock,
             "--set", f"ssl_verify_upstream_trusted_ca={pki.ca_cert}",
             "--set", f"streamtap_connect_to={HOST}:443=127.0.0.1:{upstream.port}",
             "--set", f"streamtap_capture_dir={capture}",
             "--set", f"streamtap_capture_flush_ms={FLUSH_MS}"],
            cwd=tmp_path,
        )
        try:
            follower = Follower(sock)
            follower.start()
            tags = [uuid.uuid4().hex[:10] for _ in range(CLIENTS)]
            ca = tmp_path / "certs" / "mitmproxy-ca-cert.pem"
            clients = [StreamingClient(proc.proxy_port, ca, HOST, "/v1/chat/completions", t) for t in tags]
            for c in clients:
                c.start()

            def every_stream_has_events_on_disk() -> bool:
                files = streams_on_disk(capture) if capture.exists() else {}
                tagged = {f[0]["request"]["tag"]: f for f in files.values() if f and f[0]["type"] == "stream.start"}
                return set(tagged) == set(tags) and all(len(f) >= EVENTS_BEFORE_KILL for f in tagged.values())

            wait_for(every_stream_has_events_on_disk, 30, f"{CLIENTS} streams with events in {capture}")
            seen_on_disk = {p: p.read_bytes() for p in capture.glob("*.jsonl")}
            # The process that writes the captures: the proxy, or its decoder process when
            # that runs (the proxy then stops by itself, saying why).
            writer = get_json(sock, "/healthz")["process"]
            killed_at = time.time()
            os.kill(writer, signal.SIGKILL)
            assert proc.proc.wait(10) == (-signal.SIGKILL if writer == proc.proc.pid else 1)
            for c in clients:
                c.join(10)
            follower.join(10)
        finally:
            proc.stop()
            print(proc.output)  # shown when the test fails

    # Nothing that had reached the file before the kill is gone after it.
    files = sorted(capture.glob("*.jsonl"))
    assert len(files) == CLIENTS
    for path, before in seen_on_disk.items():
        assert path.read_bytes().startswith(before), path.name

    # A torn last line for certain, cut inside a UTF-8 character: the writer's own may
    # or may not have been torn at the kill.
    torn = files[0]
    last = complete_lines(torn)[-1]
    partial = dumps({**last, "seq": last["seq"] + 1, "type": "text.delta", "text": "café", "index": 0})
    torn_by_writer = {p for p in files if not p.read_bytes().endswith(b"\n")}
    with torn.open("ab") as f:
        f.write(partial[: partial.index("é".encode()) + 1])
    torn_files = torn_by_writer | {torn}

    with caplog.at_level(logging.WARNING, logger="proxy_core.api.serve_capture"):
        events = read_capture(capture)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == len(torn_files), warnings
    for path in torn_files:
        assert len([w for w in warnings if path.name in w]) == 1, (path.name, warnings)

    assert len(events) == sum(len(complete_lines(p)) for p in files)  # every complete line, nothing else
    by_stream: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        by_stream.setdefault(e["stream"], []).append(e)
    assert {s[0]["request"]["tag"] for s in by_stream.values()} == set(tags)
    api = {(e["stream"], e["seq"]): e for e in follower.events if e.get("stream") in by_stream}
    lost = []
    for sid, stream in by_stream.items():
        assert [e["seq"] for e in stream] == list(range(len(stream))), sid  # a prefix, no hole
        assert len(stream) >= EVENTS_BEFORE_KILL
        assert stream[0]["type"] == "stream.start" and not TERMINAL & {e["type"] for e in stream}  # killed mid-stream
        for e in stream:
            assert json.loads(dumps(envelope_dict(e["offset"], sid, e["seq"], e["time"], payload_from_dict(e)))) == e
            assert e["time"] <= killed_at and (api.get((sid, e["seq"])) in (None, e))
        delivered = [e for (s, _), e in api.items() if s == sid]
        missing = [e for e in delivered if e["seq"] >= len(stream)]
        lost.append(len(missing))
        # The documented bound: only what the API delivered in the last flush window can be
        # missing (a second of slack for a busy machine's scheduling).
        assert all(e["time"] > killed_at - FLUSH_MS / 1000 - 1.0 for e in missing), (sid, missing)
    assert len({e["offset"] for e in events}) == len(events)
    print(f"events on the API but not in the capture, per stream: {lost}")

    # `streamtap replay --serve DIR`: the same events, the same one warning per torn file.
    serve_sock = tmp_path / "serve.sock"
    server = subprocess.Popen([STREAMTAP, "replay", "--serve", str(capture), "--api-socket", str(serve_sock),
                               "--speed", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        assert server.stdout.readline().startswith(f"streamtap: serving {len(events)} events")
        assert server.stdout.readline().startswith(f"streamtap: replayed {len(events)} events")
        conn = UnixHTTPConnection(str(serve_sock), timeout=10)
        conn.request("GET", "/v1/events?since=0&follow=0", headers={"Accept": "application/x-ndjson"})
        served = [json.loads(line) for line in conn.getresponse().read().splitlines()]
        conn.close()
    finally:
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=10)
    assert server.returncode == 0, stderr
    assert [(e["stream"], e["seq"], e["type"]) for e in served] == [(e["stream"], e["seq"], e["type"]) for e in events]
    assert sorted(stderr.strip().splitlines()) == sorted(warnings), stderr

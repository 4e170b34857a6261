"""`streamtap replay FILE`: a saved mitmproxy flow file decoded into the same events."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from mitmproxy import io
from mitmproxy.flow import Error
from mitmproxy.test import tflow

from tests.support import fixtures

BIN = Path(sys.executable).parent


def flow(host: str, path: str, body: bytes, coding: str | None = None, error: str | None = None):
    f = tflow.tflow(resp=True)
    f.request.host = host
    f.request.headers["host"] = host
    f.request.path = path
    f.request.headers["x-api-key"] = "sk-ant-secret"
    f.response.headers["content-type"] = "text/event-stream"
    if coding:
        f.response.headers["content-encoding"] = coding
    f.response.raw_content = body
    if error:
        f.error = Error(error)
    return f


def test_replay_decodes_routed_flows_and_skips_the_rest(tmp_path):
    fx = fixtures.anthropic_messages()
    chat = fixtures.openai_chat_text()
    path = tmp_path / "flows.mitm"
    with path.open("wb") as out:
        writer = io.FlowWriter(out)
        writer.add(flow("api.anthropic.com", "/v1/messages", fixtures.encode(fx.body, "gzip"), "gzip"))
        writer.add(tflow.tflow(resp=True))  # not routed
        writer.add(flow("api.openai.com", "/v1/chat/completions", chat.body[:400], error="Client disconnected."))
    result = subprocess.run([str(BIN / "streamtap"), "replay", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    streams = list(dict.fromkeys(e["stream"] for e in events))
    assert len(streams) == 2
    first = [e for e in events if e["stream"] == streams[0]]
    assert "".join(e["text"] for e in first if e["type"] == "text.delta") == fx.text
    assert first[-1]["type"] == "stream.end" and first[-1]["finish_reason"] == "tool_use"
    assert first[0]["request"]["headers"]["x-api-key"] == "[redacted]"
    second = [e for e in events if e["stream"] == streams[1]]
    assert second[-1]["type"] == "stream.abort" and second[-1]["by"] == "client"
    assert [e["offset"] for e in events] == list(range(1, len(events) + 1))


def test_replay_prints_the_events_byte_for_byte_as_the_api_does(tmp_path):
    """The same events served on the API (replay --serve) come as the same bytes, but for
    `time`, which the serving hub sets anew."""
    fx = fixtures.openai_chat_tools()
    flows = tmp_path / "flows.mitm"
    with flows.open("wb") as out:
        writer = io.FlowWriter(out)
        writer.add(flow("api.openai.com", "/v1/chat/completions", fixtures.openai_chat_text().body))  # non-ASCII
        writer.add(flow("api.openai.com", "/v1/chat/completions", fx.body))  # nested arguments
    printed = subprocess.run([str(BIN / "streamtap"), "replay", str(flows)], capture_output=True, timeout=60).stdout
    assert "é".encode() in printed and b'"type":"tool_call"' in printed
    capture = tmp_path / "capture.jsonl"
    capture.write_bytes(printed)
    sock = tmp_path / "serve.sock"
    server = subprocess.Popen([str(BIN / "streamtap"), "replay", "--serve", str(capture), "--api-socket", str(sock),
                               "--speed", "0"], stdout=subprocess.PIPE, text=True)
    try:
        assert "serving" in server.stdout.readline()
        assert "replayed" in server.stdout.readline()
        api = subprocess.run(["curl", "-sS", "--unix-socket", str(sock),
                              "http://localhost/v1/events?follow=false&format=ndjson"],
                             capture_output=True, timeout=30, check=True).stdout
    finally:
        server.terminate()
        server.wait(10)

    def timeless(data: bytes) -> list[bytes]:
        return [re.sub(rb'"time":[-+.eE0-9]+', b'"time":T', line) for line in data.split(b"\n")]

    assert timeless(printed) == timeless(api) and printed.count(b"\n") == len(api.splitlines()) > 10


def test_replay_into_a_reader_that_stops_early(tmp_path):
    flows = tmp_path / "flows.mitm"
    with flows.open("wb") as out:
        writer = io.FlowWriter(out)
        for _ in range(300):  # more than a pipe holds
            writer.add(flow("api.openai.com", "/v1/chat/completions", fixtures.openai_chat_text().body))
    replay = subprocess.Popen([str(BIN / "streamtap"), "replay", str(flows)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    assert replay.stdout.readline().startswith(b'{"offset":1,')
    replay.stdout.close()  # as `| head -1` does
    assert replay.wait(60) == 0 and replay.stderr.read() == b""


def test_replay_of_a_file_that_is_not_a_flow_file(tmp_path):
    bad = tmp_path / "bad.mitm"
    bad.write_bytes(b"not a flow file at all")
    result = subprocess.run([str(BIN / "streamtap"), "replay", str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "not a mitmproxy flow file" in result.stderr


def test_replay_serve_re_emits_a_capture_on_the_api(tmp_path):
    from ..support.api_http import follow_events

    capture = tmp_path / "capture.jsonl"
    fx = fixtures.openai_chat_text()
    replayed_from = tmp_path / "flows.mitm"
    with replayed_from.open("wb") as out:
        io.FlowWriter(out).add(flow("api.openai.com", "/v1/chat/completions", fx.body))
    result = subprocess.run([str(BIN / "streamtap"), "replay", str(replayed_from)], capture_output=True, text=True)
    capture.write_text(result.stdout)
    original = [json.loads(line) for line in result.stdout.splitlines()]

    sock = tmp_path / "serve.sock"
    server = subprocess.Popen([str(BIN / "streamtap"), "replay", "--serve", str(capture), "--api-socket", str(sock),
                               "--speed", "0"], stdout=subprocess.PIPE, text=True)
    try:
        assert "serving" in server.stdout.readline()
        served = []
        for event in follow_events(str(sock), since=0):
            served.append(event)
            if event["type"] == "stream.end":
                break
    finally:
        server.terminate()
        server.wait(10)
    strip = [{k: v for k, v in e.items() if k != "time"} for e in original]
    assert [{k: v for k, v in e.items() if k != "time"} for e in served] == strip
    assert not sock.exists()

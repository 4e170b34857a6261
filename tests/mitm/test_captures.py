"""Captures on disk: one JSONL file per stream, written off the proxy's loop, rotated, flushed
within an interval, and read back whole or up to a torn last line."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from proxy_core.api.serve_capture import read_capture
from proxy_core.hub.envelope import Envelope
from proxy_core.hub.hub import Hub
from proxy_core.mitm.capture_files import CaptureWriter
from proxy_core.payloads import StreamEnd, TextDelta


def test_one_file_per_stream_private_and_complete(tmp_path):
    hub = Hub()
    writer = CaptureWriter(tmp_path / "cap", file_bytes=1 << 20, max_bytes=1 << 30, max_age=3600)
    writer.start()
    hub.sinks.append(writer.put)
    a = hub.open_stream({"host": "a", "headers": {"authorization": "[redacted]"}}, {})
    b = hub.open_stream({"host": "b"}, {})
    for i in range(50):
        hub.publish(a.id, TextDelta(f"a{i} "))
        hub.publish(b.id, TextDelta(f"b{i} "))
    hub.publish(a.id, StreamEnd(200, "stop", {}, ""))
    writer.stop()
    files = sorted((tmp_path / "cap").glob("*.jsonl"))
    assert len(files) == 2 and {f.name.split("_")[1].split(".")[0] for f in files} == {a.id, b.id}
    assert (tmp_path / "cap").stat().st_mode & 0o777 == 0o700
    for f in files:
        assert f.stat().st_mode & 0o777 == 0o600
        events = [json.loads(line) for line in f.read_text().splitlines()]
        assert [e["seq"] for e in events] == list(range(len(events)))
    a_events = [json.loads(line) for line in next(f for f in files if a.id in f.name).read_text().splitlines()]
    assert a_events[-1]["type"] == "stream.end" and len(a_events) == 52


def test_large_streams_continue_in_part_files_and_old_files_are_swept(tmp_path):
    hub = Hub()
    writer = CaptureWriter(tmp_path, file_bytes=2000, max_bytes=1 << 30, max_age=3600)
    writer.start()
    hub.sinks.append(writer.put)
    s = hub.open_stream({"host": "a"}, {})
    for _ in range(100):
        hub.publish(s.id, TextDelta("x" * 50))
    hub.publish(s.id, StreamEnd(200, "stop", {}, ""))
    writer.stop()
    parts = sorted(tmp_path.glob(f"*{s.id}*.jsonl"))
    assert len(parts) > 3
    lines = [json.loads(line) for p in sorted(parts, key=lambda p: (len(p.name), p.name)) for line in p.read_text().splitlines()]
    assert [e["seq"] for e in lines] == list(range(102))
    old = tmp_path / "20000101T000000Z_old.jsonl"
    old.write_text("{}\n")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    sweeper = CaptureWriter(tmp_path, file_bytes=2000, max_bytes=1 << 30, max_age=3600)
    sweeper.sweep()
    assert not old.exists() and parts[0].exists()
    tiny = CaptureWriter(tmp_path, file_bytes=2000, max_bytes=2500, max_age=3600)
    tiny.sweep()
    assert sum(p.stat().st_size for p in tmp_path.glob("*.jsonl")) <= 2500


def test_a_backlog_is_flushed_within_the_interval_not_once_it_is_drained(tmp_path):
    """Under a steady flow the queue is never empty: a quiet stream's line must still
    reach the file within the flush interval, or a crash would lose it however old."""
    writer = CaptureWriter(tmp_path, file_bytes=1 << 30, max_bytes=1 << 40, max_age=3600, flush_interval=0.01)
    writer.put(Envelope.make(1, "quiet", 0, time.time(), TextDelta("q")))
    noisy = Envelope.make(2, "noisy", 0, time.time(), TextDelta("n"))
    for _ in range(300_000):  # seconds of writing: far longer than the interval
        writer.put(noisy)
    writer.start()
    try:
        deadline = time.monotonic() + 30
        while not any(p.stat().st_size for p in tmp_path.glob("*_quiet.jsonl")):
            assert time.monotonic() < deadline
            time.sleep(0.001)
        assert not writer.queue.empty()  # flushed while the backlog was still being written
    finally:
        writer.stop()


def test_reader_skips_a_torn_last_line_with_one_warning(tmp_path, caplog):
    line = Envelope.make(1, "s", 0, 1.0, TextDelta("a\u2028b café")).json + b"\n"  # U+2028 stays raw in JSON
    path = tmp_path / "c.jsonl"
    path.write_bytes(line + line.replace(b'"seq":0', b'"seq":1') + line[: line.index("é".encode()) + 1])
    with caplog.at_level(logging.WARNING, logger="proxy_core.api.serve_capture"):
        events = read_capture(path)
    assert [e["seq"] for e in events] == [0, 1] and events[0]["text"] == "a\u2028b café"
    assert [r.getMessage() for r in caplog.records] == [f"streamtap: {path}:3: skipped an incomplete last line (its writer stopped)"]
    path.write_bytes(line + b"{not json\n" + line)  # no crash makes this: not a capture
    with pytest.raises(ValueError, match=r"c\.jsonl:2: not JSON"):
        read_capture(path)


def test_reader_of_a_directory_joins_part_files_in_order(tmp_path):
    hub = Hub()
    writer = CaptureWriter(tmp_path, file_bytes=300, max_bytes=1 << 30, max_age=3600)
    writer.start()
    hub.sinks.append(writer.put)
    a, b = hub.open_stream({"host": "a"}, {}), hub.open_stream({"host": "b"}, {})
    for i in range(40):
        hub.publish(a.id, TextDelta(f"a{i}"))
        hub.publish(b.id, TextDelta(f"b{i}"))
    writer.stop()
    assert len(list(tmp_path.glob(f"*_{a.id}_1?.jsonl"))) > 1  # _10 and on sort before _2 by name
    events = read_capture(tmp_path)
    assert [e["offset"] for e in events] == list(range(1, 83))
    for sid in (a.id, b.id):
        assert [e["seq"] for e in events if e["stream"] == sid] == list(range(41))


def test_a_bad_flush_interval_is_refused_at_start(tmp_path):
    result = subprocess.run([str(Path(sys.executable).with_name("streamtap")), "run", "--certs", str(tmp_path / "c"),
                             "--api-socket", str(tmp_path / "s.sock"), "--set", "streamtap_capture_flush_ms=-1"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == "streamtap: streamtap_capture_flush_ms: must be 0 or more"


def test_a_served_capture_keeps_secrets_masked_even_if_its_file_has_them(tmp_path):
    """A capture written by hand or by another tool: `replay --serve` masks it as the proxy would."""
    start = {"type": "stream.start", "offset": 1, "stream": "s1", "seq": 0, "time": 1.0,
             "request": {"host": "api.openai.com", "url": "https://api.openai.com/v1/x?key=AIzaSECRET",
                         "path": "/v1/x?key=AIzaSECRET",
                         "headers": {"Authorization": "Bearer sk-SECRET", "x-goog-api-key": "AIzaSECRET"}},
             "response": {"status": 200, "headers": {"set-cookie": "session=SECRET"}}}
    (tmp_path / "c.jsonl").write_text(json.dumps(start) + "\n")
    [event] = read_capture(tmp_path / "c.jsonl")
    assert "SECRET" not in json.dumps(event)
    assert event["request"]["headers"]["authorization"] == "[redacted]"

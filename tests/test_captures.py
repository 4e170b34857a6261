"""Captures on disk: one JSONL file per stream, written off the proxy's loop, rotated."""

from __future__ import annotations

import json
import os
import time

from proxy_core.addons.captures import CaptureWriter
from proxy_core.events import StreamEnd, TextDelta
from proxy_core.hub import Hub


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
    sweeper._sweep()
    assert not old.exists() and parts[0].exists()
    tiny = CaptureWriter(tmp_path, file_bytes=2000, max_bytes=2500, max_age=3600)
    tiny._sweep()
    assert sum(p.stat().st_size for p in tmp_path.glob("*.jsonl")) <= 2500

"""Newline-delimited JSON (NDJSON / JSON Lines): one JSON value per line.

A malformed line is a WireError and the next line is read as usual; a line longer
than `max_event_bytes` is skipped with memory bounded.
"""

from __future__ import annotations

import json

from proxy_core.wire.errors import WireError
from proxy_core.wire.json_stream import JsonDocument
from proxy_core.wire.sse import DEFAULT_MAX_EVENT_BYTES


class NDJSONDecoder:
    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self.max_event_bytes = max_event_bytes
        self._buf = bytearray()
        self._buf_at = 0  # body offset of _buf[0]
        self._scanned = 0
        self._skipping = False  # inside an oversized line

    def feed(self, data: bytes) -> list[JsonDocument | WireError]:
        out: list[JsonDocument | WireError] = []
        buf = self._buf
        buf += data
        start = 0
        while (end := buf.find(b"\n", max(start, self._scanned))) >= 0:
            if self._skipping:
                self._skipping = False
            else:
                self._line(bytes(buf[start:end]), self._buf_at + start, out)
            start = end + 1
        if start:
            del buf[:start]
            self._buf_at += start
        self._scanned = len(buf)
        if len(buf) > self.max_event_bytes and not self._skipping:
            out.append(WireError(f"ndjson: line larger than {self.max_event_bytes} bytes skipped", self._buf_at))
            self._skipping = True
        if self._skipping:
            self._buf_at += len(buf)
            buf.clear()
            self._scanned = 0
        return out

    def close(self) -> list[JsonDocument | WireError]:
        out: list[JsonDocument | WireError] = []
        if self._buf and not self._skipping:
            self._line(bytes(self._buf), self._buf_at, out)
        self._buf.clear()
        return out

    def _line(self, line: bytes, at: int, out: list[JsonDocument | WireError]) -> None:
        line = line.strip()
        if not line:
            return
        try:
            out.append(JsonDocument(json.loads(line), at))
        except ValueError as e:
            out.append(WireError(f"ndjson: malformed line ({e})", at))

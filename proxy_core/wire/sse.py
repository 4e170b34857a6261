"""Server-sent events, decoded incrementally by the WHATWG rules.

https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation

Two stages, as in httpx-sse: bytes -> lines (LF, CR or CRLF, a CR at the end of one
chunk and an LF at the start of the next count once), then lines -> events. The lines
a chunk completes are split off in one call, and only the part after the last line
end stays buffered, so each byte is looked at a bounded number of times. Lines stay
bytes: field names are ASCII and a colon or LF never occurs inside a UTF-8 sequence,
so decoding a field's value (for `data`, all its lines joined) gives the same text as
decoding each line would, and a character cut between chunks is never split. Buffers
are bounded by `max_event_bytes`: a larger event becomes a WireError and is
skipped, and decoding goes on with the next one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

from proxy_core.wire.errors import WireError

# The separator is captured: its length (1 or 2) moves the body offset.
_LINE_END = re.compile(rb"(\r\n|\r|\n)")
_BOM = b"\xef\xbb\xbf"
_COLON = 0x3A

DEFAULT_MAX_EVENT_BYTES = 8 * 1024 * 1024


class ServerSentEvent(NamedTuple):
    """One dispatched event. A tuple: one is made per event, and it is the cheapest
    immutable record."""

    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None
    at_byte: int = 0  # body offset of the event's first line


class SSEDecoder:
    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self.max_event_bytes = max_event_bytes
        self._buf = bytearray()
        self._buf_at = 0  # body offset of _buf[0]
        self._skip_lf = False  # last chunk ended in CR: an LF next is part of it
        self._first_line = True
        # The event being built; its data lines stay bytes until it is dispatched.
        self._data: list[bytes | bytearray] = []
        self._event_type = ""
        self._last_id: str | None = None
        self._retry: int | None = None
        self._event_at: int | None = None
        self._event_bytes = 0
        self._skipping = False  # dropping an oversized event until its blank line
        self._dropping_line = False  # the next line end closes a line already dropped

    def feed(self, data: bytes) -> list[ServerSentEvent | WireError]:
        out: list[ServerSentEvent | WireError] = []
        if not data:
            return out
        buf = self._buf
        if self._skip_lf:
            self._skip_lf = False
            if data[:1] == b"\n":
                data = data[1:]
                self._buf_at += 1
        # Only the new bytes can hold a line end: what is kept is one partial line.
        last_lf = data.rfind(b"\n")
        last_cr = data.rfind(b"\r")
        if last_lf < 0 and last_cr < 0:
            buf += data
        else:
            self._skip_lf = last_cr == len(data) - 1
            end = len(buf) + max(last_lf, last_cr) + 1  # just past the last line end
            buf += data
            at = self._buf_at
            if last_cr < 0:
                lines = buf[: end - 1].split(b"\n")
                self._lines(lines, [1] * len(lines), at, out)
            else:
                pieces = _LINE_END.split(buf[:end])
                self._lines(pieces[0:-1:2], [len(sep) for sep in pieces[1::2]], at, out)
            del buf[:end]
            self._buf_at += end
        partial = len(buf) - (len(_BOM) if self._first_line and buf.startswith(_BOM) else 0)  # a BOM is no data
        if partial + self._event_bytes > self.max_event_bytes and not self._skipping:
            out.append(self._oversized(self._buf_at))
        if self._skipping and buf:
            # Memory stays bounded: the rest of an oversized line is never kept.
            self._buf_at += len(buf)
            buf.clear()
            self._dropping_line = True
        return out

    @property
    def buffered(self) -> int:
        """Bytes held back: the partial line (bounded by max_event_bytes)."""
        return len(self._buf)

    def close(self) -> list[ServerSentEvent | WireError]:
        """End of body. A last line without a line end still counts, and an event not
        closed by a blank line is still dispatched: text the provider sent is never
        dropped (the WHATWG rules would discard it; see docs/events.md)."""
        out: list[ServerSentEvent | WireError] = []
        if self._buf:
            self._line(bytes(self._buf), self._buf_at, out)
            self._buf_at += len(self._buf)
            self._buf.clear()
        self._line(b"", self._buf_at, out)
        return out

    def _oversized(self, at: int) -> WireError:
        self._skipping = True
        self._reset_event()
        return WireError(f"sse: event larger than {self.max_event_bytes} bytes skipped", at)

    def _reset_event(self) -> None:
        self._data = []
        self._event_type = ""
        self._event_at = None
        self._event_bytes = 0

    def _lines(
        self, lines: Sequence[bytes | bytearray], ends: list[int], at: int, out: list[ServerSentEvent | WireError]
    ) -> None:
        """Complete lines, each followed by a line end of the length in `ends`."""
        for raw, end in zip(lines, ends, strict=True):
            self._line(raw, at, out)
            at += len(raw) + end

    def _line(self, raw: bytes | bytearray, at: int, out: list[ServerSentEvent | WireError]) -> None:
        if self._first_line:
            self._first_line = False
            if raw.startswith(_BOM):
                raw = raw[3:]
        if self._dropping_line:
            self._dropping_line = False
            return
        if not raw:
            self._dispatch(out)
            return
        if self._skipping:
            return
        self._event_bytes += len(raw) + 1
        if self._event_bytes > self.max_event_bytes:
            out.append(self._oversized(at))
            return
        if raw[0] == _COLON:
            return  # comment
        name, colon, value = raw.partition(b":")
        if colon and value.startswith(b" "):
            value = value[1:]
        if self._event_at is None:
            self._event_at = at
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event_type = value.decode("utf-8", errors="replace")
        elif name == b"id":
            if b"\0" not in value:
                self._last_id = value.decode("utf-8", errors="replace")
        elif name == b"retry":
            if value.isdigit() and len(value) <= 18:  # ASCII digits; beyond 18, not a delay anyone means
                self._retry = int(value)

    def _dispatch(self, out: list[ServerSentEvent | WireError]) -> None:
        if self._skipping:
            self._skipping = False
            self._reset_event()
            return
        if self._data:
            data = b"\n".join(self._data) if len(self._data) > 1 else self._data[0]
            # Positional: the keyword form costs this once-per-event call a fifth more.
            out.append(
                ServerSentEvent(
                    data.decode("utf-8", errors="replace"),
                    self._event_type or "message",
                    self._last_id,
                    self._retry,
                    self._event_at or 0,
                )
            )
        self._reset_event()

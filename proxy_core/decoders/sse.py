"""Server-sent events, decoded incrementally by the WHATWG rules.

https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation

Two stages, as in httpx-sse: bytes -> lines (LF, CR or CRLF, a CR at the end of one
chunk and an LF at the start of the next count once), then lines -> events. A line is
decoded as UTF-8 only once it is complete, so a character cut between chunks is never
split. Buffers are bounded by `max_event_bytes`: a larger event becomes a DecodeError
and is skipped, and decoding goes on with the next one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..events import DecodeError

_LINE_END = re.compile(rb"[\r\n]")
_BOM = b"\xef\xbb\xbf"

DEFAULT_MAX_EVENT_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None
    at_byte: int = 0  # body offset of the event's first line


class SSEDecoder:
    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self.max_event_bytes = max_event_bytes
        self._buf = bytearray()
        self._scanned = 0  # bytes of _buf known to hold no line end
        self._buf_at = 0  # body offset of _buf[0]
        self._skip_lf = False  # last chunk ended in CR: an LF next is part of it
        self._first_line = True
        # The event being built.
        self._data: list[str] = []
        self._event_type = ""
        self._last_id: str | None = None
        self._retry: int | None = None
        self._event_at: int | None = None
        self._event_bytes = 0
        self._skipping = False  # dropping an oversized event until its blank line
        self._dropping_line = False  # the next line end closes a line already dropped

    def feed(self, data: bytes) -> list[ServerSentEvent | DecodeError]:
        out: list[ServerSentEvent | DecodeError] = []
        if not data:
            return out
        buf = self._buf
        if self._skip_lf:
            self._skip_lf = False
            if data[:1] == b"\n":
                data = data[1:]
                self._buf_at += 1
        buf += data
        start = 0
        while (m := _LINE_END.search(buf, max(start, self._scanned))) is not None:
            end = m.start()
            self._line(bytes(buf[start:end]), self._buf_at + start, out)
            if buf[end] == 0x0D:
                if end + 1 == len(buf):
                    self._skip_lf = True
                elif buf[end + 1] == 0x0A:
                    end += 1
            start = end + 1
        if start:
            del buf[:start]
            self._buf_at += start
        self._scanned = len(buf)
        if len(buf) + self._event_bytes > self.max_event_bytes and not self._skipping:
            out.append(self._oversized(self._buf_at))
        if self._skipping and buf:
            # Memory stays bounded: the rest of an oversized line is never kept.
            self._buf_at += len(buf)
            buf.clear()
            self._scanned = 0
            self._dropping_line = True
        return out

    def close(self) -> list[ServerSentEvent | DecodeError]:
        """End of body. A last line without a line end still counts, and an event not
        closed by a blank line is still dispatched: text the provider sent is never
        dropped (the WHATWG rules would discard it; see docs/events.md)."""
        out: list[ServerSentEvent | DecodeError] = []
        if self._buf:
            self._line(bytes(self._buf), self._buf_at, out)
            self._buf_at += len(self._buf)
            self._buf.clear()
        self._line(b"", self._buf_at, out)
        return out

    def _oversized(self, at: int) -> DecodeError:
        self._skipping = True
        self._reset_event()
        return DecodeError(f"sse: event larger than {self.max_event_bytes} bytes skipped", at)

    def _reset_event(self) -> None:
        self._data = []
        self._event_type = ""
        self._event_at = None
        self._event_bytes = 0

    def _line(self, raw: bytes, at: int, out: list[ServerSentEvent | DecodeError]) -> None:
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
        line = raw.decode("utf-8", errors="replace")
        if line[0] == ":":
            return  # comment
        name, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if self._event_at is None:
            self._event_at = at
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event_type = value
        elif name == "id":
            if "\0" not in value:
                self._last_id = value
        elif name == "retry":
            if value.isascii() and value.isdigit():
                self._retry = int(value)

    def _dispatch(self, out: list[ServerSentEvent | DecodeError]) -> None:
        if self._skipping:
            self._skipping = False
            self._reset_event()
            return
        if self._data:
            out.append(
                ServerSentEvent(
                    data="\n".join(self._data),
                    event=self._event_type or "message",
                    id=self._last_id,
                    retry=self._retry,
                    at_byte=self._event_at or 0,
                )
            )
        self._reset_event()

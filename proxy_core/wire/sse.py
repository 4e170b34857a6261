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


class LineSplitter:
    """Stage one: bytes to complete lines. LF, CR and CRLF end a line, and a CR ending
    one chunk with an LF starting the next counts once. Only the part after the last
    line end is kept (`partial`)."""

    __slots__ = ("partial", "at", "_skip_lf")

    def __init__(self) -> None:
        self.partial = bytearray()
        self.at = 0  # body offset of partial[0]
        self._skip_lf = False  # the last chunk ended in CR: an LF next is part of it

    def split(self, data: bytes) -> tuple[Sequence[bytes | bytearray], list[int], int]:
        """The lines `data` completes, the length of each one's line end, and the body
        offset of the first."""
        buf = self.partial
        if self._skip_lf:
            self._skip_lf = False
            if data[:1] == b"\n":
                data = data[1:]
                self.at += 1
        # Only the new bytes can hold a line end: what is kept is one partial line.
        last_lf = data.rfind(b"\n")
        last_cr = data.rfind(b"\r")
        if last_lf < 0 and last_cr < 0:
            buf += data
            return (), [], self.at
        self._skip_lf = last_cr == len(data) - 1
        end = len(buf) + max(last_lf, last_cr) + 1  # just past the last line end
        buf += data
        at = self.at
        if last_cr < 0:
            lines: Sequence[bytes | bytearray] = buf[: end - 1].split(b"\n")
            ends = [1] * len(lines)
        else:
            pieces = _LINE_END.split(buf[:end])
            lines, ends = pieces[0:-1:2], [len(sep) for sep in pieces[1::2]]
        del buf[:end]
        self.at += end
        return lines, ends, at

    def drop_partial(self) -> None:
        """Forget the partial line (the rest of an oversized one): memory stays bounded."""
        self.at += len(self.partial)
        self.partial.clear()

    def take_partial(self) -> tuple[bytes, int]:
        """At the end of the body: the last line, though no line end came."""
        line, at = bytes(self.partial), self.at
        self.at += len(self.partial)
        self.partial.clear()
        return line, at


class EventAssembler:
    """Stage two: lines to events, by the WHATWG field rules, each event bounded by
    `max_event_bytes` (a larger one is a WireError, then skipped to its blank line)."""

    __slots__ = ("max_event_bytes", "event_bytes", "skipping", "dropping_line", "_first_line", "_data",
                 "_event_type", "_last_id", "_retry", "_event_at")

    def __init__(self, max_event_bytes: int) -> None:
        self.max_event_bytes = max_event_bytes
        self.event_bytes = 0  # of the event being built
        self.skipping = False  # dropping an oversized event until its blank line
        self.dropping_line = False  # the next line end closes a line already dropped
        self._first_line = True
        # The event being built; its data lines stay bytes until it is dispatched.
        self._data: list[bytes | bytearray] = []
        self._event_type = ""
        self._last_id: str | None = None
        self._retry: int | None = None
        self._event_at: int | None = None

    def pending_bom(self, partial: bytearray) -> int:
        """Bytes of a BOM at the start of the body, which are no data."""
        return len(_BOM) if self._first_line and partial.startswith(_BOM) else 0

    def lines(
        self, lines: Sequence[bytes | bytearray], ends: list[int], at: int, out: list[ServerSentEvent | WireError]
    ) -> None:
        """Complete lines, each followed by a line end of the length in `ends`."""
        for raw, end in zip(lines, ends, strict=True):
            self.line(raw, at, out)
            at += len(raw) + end

    def line(self, raw: bytes | bytearray, at: int, out: list[ServerSentEvent | WireError]) -> None:
        if self._first_line:
            self._first_line = False
            if raw.startswith(_BOM):
                raw = raw[3:]
        if self.dropping_line:
            self.dropping_line = False
            return
        if not raw:
            self.dispatch(out)
            return
        if self.skipping:
            return
        self.event_bytes += len(raw) + 1
        if self.event_bytes > self.max_event_bytes:
            out.append(self.oversized(at))
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

    def dispatch(self, out: list[ServerSentEvent | WireError]) -> None:
        if self.skipping:
            self.skipping = False
            self._reset()
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
        self._reset()

    def oversized(self, at: int) -> WireError:
        self.skipping = True
        self._reset()
        return WireError(f"sse: event larger than {self.max_event_bytes} bytes skipped", at)

    def _reset(self) -> None:
        self._data = []
        self._event_type = ""
        self._event_at = None
        self.event_bytes = 0


class SSEDecoder:
    """`feed(bytes) -> events`, `close() -> events`: the two stages in a row, with the
    bound on an event that is still one unfinished line."""

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self.max_event_bytes = max_event_bytes
        self._lines = LineSplitter()
        self._events = EventAssembler(max_event_bytes)

    def feed(self, data: bytes) -> list[ServerSentEvent | WireError]:
        out: list[ServerSentEvent | WireError] = []
        if not data:
            return out
        lines, ends, at = self._lines.split(data)
        events = self._events
        if lines:
            events.lines(lines, ends, at, out)
        partial = self._lines.partial
        unfinished = len(partial) - events.pending_bom(partial) + events.event_bytes
        if unfinished > self.max_event_bytes and not events.skipping:
            out.append(events.oversized(self._lines.at))
        if events.skipping and partial:
            self._lines.drop_partial()
            events.dropping_line = True
        return out

    @property
    def buffered(self) -> int:
        """Bytes held back: the partial line (bounded by max_event_bytes)."""
        return len(self._lines.partial)

    def close(self) -> list[ServerSentEvent | WireError]:
        """End of body. A last line without a line end still counts, and an event not
        closed by a blank line is still dispatched: text the provider sent is never
        dropped (the WHATWG rules would discard it; see docs/events.md)."""
        out: list[ServerSentEvent | WireError] = []
        if self._lines.partial:
            line, at = self._lines.take_partial()
            self._events.line(line, at, out)
        self._events.line(b"", self._lines.at, out)
        return out

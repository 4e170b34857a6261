"""Google's length-prefixed JSON frames (the `rt=c` "chunked" answers of its web apps,
Gemini's StreamGenerate among them), decoded incrementally.

    )]}'                       anti-XSSI guard, once at the start
    <len>\\n<JSON>\\n            a frame: <len> in ASCII digits, then <len> units of text
    <len>\\n<JSON>\\n            ...

`<len>` counts UTF-16 code units (JavaScript's `String.length`), counted from just after
the digits, so the newline that follows the number is inside the count; the frame's text
is stripped before it is parsed. This is how the public readers of the format do it:
HanaokaYuzu/Gemini-API src/gemini_webapi/utils/parsing.py `parse_response_by_frame`
(commit fbe07905) and xtekky/gpt4free g4f/Provider/needs_auth/gemini_utils.py
`parse_google_frames` (commit eef67f8c); see docs/formats.md.

Bytes become text through an incremental UTF-8 decoder, so a character cut between
chunks is never split. A frame whose length line is not digits, or whose text is not
JSON, becomes a WireError carrying the start of the raw text, and decoding goes on with
the next line or frame. A frame longer than `max_event_bytes` units is skipped with
memory bounded. `at_byte` is the frame's offset in the body (its UTF-8 byte count, as
re-encoded: exact for valid UTF-8).
"""

from __future__ import annotations

import codecs
import json
import re

from proxy_core.wire.errors import WireError
from proxy_core.wire.json_stream import JsonDocument
from proxy_core.wire.sse import DEFAULT_MAX_EVENT_BYTES

_XSSI = ")]}'"
_DIGITS = re.compile(r"[0-9]+")
_MAX_DIGITS = 12
RAW_LIMIT = 200  # characters of a malformed frame kept in its error


def utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def chars_for_units(text: str, units: int) -> tuple[int, int]:
    """The longest prefix of `text` that is at most `units` UTF-16 code units long:
    (its length in characters, its length in units)."""
    k = min(units, len(text))
    u = utf16_units(text[:k])
    while u > units:
        k -= (u - units + 1) // 2
        u = utf16_units(text[:k])
    return k, u


class LengthPrefixedDecoder:
    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self.max_event_bytes = max_event_bytes
        self._utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        self._buf = ""
        self._buf_at = 0  # body offset of _buf[0], in bytes
        self._started = False  # the XSSI guard, if any, is behind us
        self._need: int | None = None  # units of the frame being read, once its length is known
        self._frame_at = 0
        self._skip = 0  # units still to drop of an oversized frame
        self._closed = False

    def feed(self, data: bytes) -> list[JsonDocument | WireError]:
        if not data:
            return []
        self._buf += self._utf8.decode(data)
        return self._frames(final=False)

    def close(self) -> list[JsonDocument | WireError]:
        if self._closed:
            return []
        self._closed = True
        self._buf += self._utf8.decode(b"", final=True)
        out = self._frames(final=True)
        rest = self._buf.strip()
        if self._need is not None:
            out.append(WireError(
                f"google frames: body ended inside a frame ({utf16_units(self._buf)} of {self._need} units): "
                f"{_raw(self._buf)}", self._frame_at))
        elif self._skip:
            pass
        elif rest:
            out.append(WireError(f"google frames: body ended with an incomplete length line: {_raw(rest)}",
                                 self._buf_at))
        self._buf = ""
        return out

    # ---------------------------------------------------------------------------

    def _consume(self, chars: int) -> str:
        taken, self._buf = self._buf[:chars], self._buf[chars:]
        self._buf_at += len(taken.encode("utf-8", "surrogatepass"))
        return taken

    def _frames(self, final: bool) -> list[JsonDocument | WireError]:
        out: list[JsonDocument | WireError] = []
        if not self._started:
            head = self._buf.lstrip()
            if len(head) < len(_XSSI) and _XSSI.startswith(head) and not final:
                return out  # could still be the guard
            self._started = True
            if head.startswith(_XSSI):
                self._consume(len(self._buf) - len(head) + len(_XSSI))
        while self._buf:
            if self._skip:
                chars, units = chars_for_units(self._buf, self._skip)
                self._consume(chars)
                self._skip -= units
                if self._skip:
                    break
                continue
            if self._need is None:
                stripped = self._buf.lstrip()
                if not stripped:
                    self._consume(len(self._buf))
                    break
                self._consume(len(self._buf) - len(stripped))
                m = _DIGITS.match(self._buf)
                end = m.end() if m else 0
                if m and end == len(self._buf) and end <= _MAX_DIGITS and not final:
                    break  # the number may go on
                if not m or end > _MAX_DIGITS:
                    # Not a length line: report it, and go on after it.
                    nl = self._buf.find("\n")
                    if nl < 0 and not final and len(self._buf) < RAW_LIMIT:
                        break
                    line_end = len(self._buf) if nl < 0 else nl + 1
                    at = self._buf_at
                    line = self._consume(line_end)
                    out.append(WireError(f"google frames: expected a frame length, got {_raw(line)}", at))
                    continue
                self._frame_at = self._buf_at
                self._need = int(self._buf[:end])
                self._consume(end)
                if self._need > self.max_event_bytes:
                    out.append(WireError(
                        f"google frames: frame of {self._need} units larger than {self.max_event_bytes} skipped",
                        self._frame_at))
                    self._skip, self._need = self._need, None
                continue
            chars, units = chars_for_units(self._buf, self._need)
            if units < self._need:
                if chars == len(self._buf):
                    break  # the frame goes on in a later chunk
                chars += 1  # the count ends inside a surrogate pair: the whole character
            at = self._frame_at
            text = self._consume(chars).strip()
            self._need = None
            if not text:
                continue
            try:
                value = json.loads(text)
            except ValueError as e:
                out.append(WireError(f"google frames: frame is not JSON ({e}): {_raw(text)}", at))
                continue
            out.append(JsonDocument(value, at))
        return out


def _raw(text: str) -> str:
    text = text.strip()
    return json.dumps(text[:RAW_LIMIT] + ("..." if len(text) > RAW_LIMIT else ""), ensure_ascii=False)

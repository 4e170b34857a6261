"""`streamtap tail`'s human view: a header line per stream, text as it streams, reasoning
dimmed, a refusal marked, tool calls and outcomes in colour (none when not on a terminal or
NO_COLOR), and everything else on a line of its own: tool results, citations, media,
signatures, usage, frames and provider events as a short label and an excerpt, notices
(a stall, a decode error, a gap, a restart) in words. A type this view does not know is
still shown, as `[type]` and its fields: nothing is dropped."""

from __future__ import annotations

import json
import re
from typing import Any

DIM, MAGENTA, GREEN, RED, YELLOW, CYAN, BOLD, RESET = "2", "35", "32", "31", "33", "36", "1", "0"
EXCERPT = 120  # characters of a tool result's, a frame's or a provider event's data on its line
COMMON = ("offset", "stream", "seq", "type", "time", "instance")  # the envelope, not an event's own fields


class TailView:
    def __init__(self, colour: bool) -> None:
        self.colour = colour
        self.current: str | None = None  # stream whose text is being written
        self.at_line_start = True
        self.refusing = False  # the text being written is a refusal's (begun with its mark)

    def _c(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[{RESET}m" if self.colour else text

    def _line(self, text: str, code: str | None = None) -> str:
        """A line of its own, in colour `code`: its text from the wire shows as text,
        never as a line end or an escape sequence."""
        prefix = "" if self.at_line_start else "\n"
        self.at_line_start = True
        self.refusing = False
        text = _one_line_safe(text)
        return f"{prefix}{self._c(code, text) if code else text}\n"

    def render(self, event: dict[str, Any]) -> str:
        state = self.current, self.at_line_start, self.refusing
        try:
            return self._render(event)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError):
            # An event short of a field its type should have: shown as it is, never a crash.
            _, self.at_line_start, self.refusing = state
            self.current = None
            return self._line(_generic(event))

    def _render(self, event: dict[str, Any]) -> str:
        kind = event.get("type")
        sid = event.get("stream")
        if kind == "stream.start":
            req = event["request"]
            tag = f" tag={req['tag']}" if req.get("tag") else ""
            if event.get("transport") == "websocket":  # an answer on a WebSocket, not the GET of its upgrade
                warmup = " warm-up" if req.get("warmup") else ""
                tag = f" WebSocket {event.get('connection')} #{req.get('answer', 0)}{warmup}{tag}"
            self.current = sid
            return self._line(f"── {sid} {req['method']} {req['url']} [{req['provider']}]{tag}", BOLD)
        if kind == "stream.end":
            detail = f"{event.get('finish_reason') or ''} {event['totals']['text_chars']} chars"
            return self._line(f"── {sid} end {detail}", GREEN)
        if kind in ("stream.abort", "stream.error"):
            who = f"by {event['by']} " if kind == "stream.abort" else f"{event.get('status')} "
            return self._line(f"── {sid} {kind.split('.')[1]} {who}{event.get('message', '')}", RED)
        if kind in NOTICES:
            # A line of its own, then the stream's header again before more of its text:
            # what follows the notice is never taken for the start of an answer.
            self.current = None
            return self._line(f"── {_notice(kind, event)}", YELLOW)
        if sid is None:  # a notice of a kind this view does not know: to the reader, of no stream
            self.current = None
            return self._line(_generic(event), YELLOW)
        out = ""
        if sid != self.current:
            self.current = sid  # several streams at once: say whose text follows
            out += self._line(f"── {sid}", BOLD)
        if kind in INLINE:
            return out + self._inline(kind, event["text"])
        return out + self._line(*self._one_line(kind, event))

    def _inline(self, kind: Any, text: str) -> str:
        """The streamed texts, as they come: the answer as it is, reasoning dimmed, a
        refusal on a line of its own, begun with `[refusal]`, never run into the answer."""
        if not text:
            return ""
        text = _printable(text)
        out = ""
        if (kind == "refusal.delta") != self.refusing and not self.at_line_start:
            out, self.at_line_start = "\n", True
        if kind == "refusal.delta":
            out += self._c(RED, text if self.refusing else "[refusal] " + text)
            self.refusing = True
        else:
            self.refusing = False
            out += self._c(DIM, text) if kind == "reasoning.delta" else text
        self.at_line_start = text.endswith("\n")  # the text itself: a colour's reset code may follow its line end
        return out

    def _one_line(self, kind: Any, event: dict[str, Any]) -> tuple[str, str | None]:
        """The line of an event that is not streamed text, and its colour."""
        if kind == "tool_call":
            if event.get("raw_arguments") is not None:  # not a JSON object (a custom tool's input): as sent
                args = json.dumps(event["raw_arguments"], ensure_ascii=False)
            else:
                args = json.dumps(event["arguments"], ensure_ascii=False)
            server = " (server)" if event.get("server") else ""  # run by the provider: its result follows
            return f"[tool_call {event['name']}{server} {args}]", MAGENTA
        if kind == "tool_result":
            label = " ".join(str(part) for part in (event.get("kind"), event.get("id")) if part)
            return f"[tool_result {label}] {excerpt(event.get('content'))}", MAGENTA
        if kind == "citation":
            return _citation(event), CYAN
        if kind == "media":
            return _media(event), CYAN
        if kind == "signature":  # opaque and long: only how long
            what = "" if event.get("kind") == "signature" else f" {event.get('kind')}"
            value = event.get("value")
            return f"[signature{what}{f' {len(value)} chars' if isinstance(value, str) else ''}]", DIM
        if kind == "usage":
            n = ["?" if event.get(k) is None else event[k] for k in ("input_tokens", "output_tokens", "total_tokens")]
            return f"[usage {n[0]} in · {n[1]} out · {n[2]} total]", DIM
        if kind == "provider.event":
            return f"[provider.event {event.get('provider_type')}] {excerpt(event.get('data'))}", DIM
        if kind == "frame":
            name = f" {event['event']}" if event.get("event") is not None else ""
            return f"[frame{name}] {excerpt(event.get('data'))}", None
        return _generic(event), None


INLINE = ("text.delta", "reasoning.delta", "refusal.delta")
NOTICES = ("stream.stall", "decode.error", "gap", "cutoff", "restart")
# C0 and C1 controls (an escape sequence would drive the terminal), lone surrogates
# (which cannot be written as UTF-8), and the bidirectional overrides.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]")
_SPACE = re.compile(r"\s+")
# In the streamed texts, which keep their line ends and tabs: the other controls.
_UNSAFE_INLINE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def _printable(text: str) -> str:
    """A streamed text as it is, but for what would drive the terminal rather than show:
    a CR is a line end, an escape or other control U+FFFD."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _UNSAFE_INLINE.sub("\ufffd", text)


def _one_line_safe(text: str) -> str:
    """A line's text with no line end or control in it: those show as a space (white
    space) or U+FFFD."""
    return _UNSAFE.sub(lambda m: " " if m.group().isspace() else "\ufffd", text).rstrip()


def _clean(text: str) -> str:
    """One line of printable text: white space runs as one space, controls as U+FFFD."""
    return _UNSAFE.sub("\ufffd", _SPACE.sub(" ", text)).strip()


def excerpt(value: Any, limit: int = EXCERPT) -> str:
    """A string as it is, anything else as compact JSON; on one line, at most `limit`
    characters (cut with an ellipsis). None is nothing."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = _clean(text)
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    value, unit = n / 1024, "KB"
    if value >= 1024:
        value, unit = value / 1024, "MB"
    return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"


def _media(event: dict[str, Any]) -> str:
    """`[image 12 KB] image/png inlineData`: what it is and how big, never its data."""
    mime, size = event.get("mime_type"), event.get("size")
    head = mime.split("/")[0] if isinstance(mime, str) and "/" in mime else "media"
    if isinstance(size, int) and not isinstance(size, bool):
        head += f" {_size(size)}"
    rest = " ".join(_clean(str(v)) for v in (mime, event.get("kind"), event.get("uri")) if v)
    return f"[{_clean(head)}] {rest}".rstrip()


URL_KEYS = ("url", "uri", "retrievedUrl", "file_id")
TITLE_KEYS = ("title", "document_title", "filename")
MAX_SOURCES = 3


def _sources(data: Any, found: list[tuple[str, str]], depth: int = 0) -> None:
    """The (title, address) pairs of a citation's JSON, whatever the provider's shape
    (Anthropic's and Responses' flat ones, chat's `url_citation` object, Gemini's
    `groundingChunks[].web`, `citations[]`, `urlMetadata[]`)."""
    if depth > 6 or len(found) > 50:
        return
    if isinstance(data, dict):
        url = next((v for k in URL_KEYS if isinstance(v := data.get(k), str) and v), "")
        title = next((v for k in TITLE_KEYS if isinstance(v := data.get(k), str) and v), "")
        if url or title:
            if (title, url) not in found:
                found.append((title, url))
            return
        items: Any = data.values()
    elif isinstance(data, list):
        items = data
    else:
        return
    for item in items:
        _sources(item, found, depth + 1)


def _citation(event: dict[str, Any]) -> str:
    """`[cite: Title https://...]` (several: ` · `), or the citation's kind and JSON
    when it names no source."""
    found: list[tuple[str, str]] = []
    _sources(event.get("data"), found)
    if not found:
        return f"[cite {_clean(str(event.get('kind')))}] {excerpt(event.get('data'))}".rstrip()
    shown = [" ".join(excerpt(part, 80) for part in pair if part) for pair in found[:MAX_SOURCES]]
    more = f" · +{len(found) - MAX_SOURCES} more" if len(found) > MAX_SOURCES else ""
    return f"[cite: {' · '.join(shown)}{more}]"


def _generic(event: dict[str, Any]) -> str:
    """`[type] {its fields}`: an event of a type this view has no words for."""
    fields = {k: v for k, v in event.items() if k not in COMMON}
    return f"[{_clean(str(event.get('type')))}] {excerpt(fields) if fields else ''}".rstrip()


def _notice(kind: str, event: dict[str, Any]) -> str:
    """A notice in words: the stream's own ones name it, the reader's ones (gap,
    cutoff, restart, which belong to no stream) say what this reader missed."""
    sid = event.get("stream")
    if kind == "stream.stall":
        idle = event.get("idle")
        seconds = f"{round(idle, 1):g} s" if isinstance(idle, int | float) else "a while"
        return f"{sid} stalled: no bytes for {seconds} (the stream goes on)"
    if kind == "decode.error":
        return f"{sid} decode error at byte {event.get('at_byte')}: {event.get('message', '')}"
    if kind == "gap":
        return (f"gap: events {event.get('from')} to {event.get('to')} were lost to this reader "
                "(no longer in the ring buffer)")
    if kind == "cutoff":
        return (f"cut off: this reader fell {event.get('lag')} events behind; "
                f"resume with --since {event.get('resume_from')}")
    instance = f" (instance {event['instance']})" if event.get("instance") else ""
    return f"restart: streamtap restarted{instance}; its events follow from its start"

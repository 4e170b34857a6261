"""`streamtap tail`'s human view: a header line per stream, text as it streams, reasoning
dimmed, tool calls and outcomes in colour (none when not on a terminal or NO_COLOR), and
notices (a stall, a decode error, a gap, a restart) in words, each on a line of its own."""

from __future__ import annotations

import json
from typing import Any

DIM, MAGENTA, GREEN, RED, YELLOW, BOLD, RESET = "2", "35", "32", "31", "33", "1", "0"


class TailView:
    def __init__(self, colour: bool) -> None:
        self.colour = colour
        self.current: str | None = None  # stream whose text is being written
        self.at_line_start = True

    def _c(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[{RESET}m" if self.colour else text

    def _line(self, text: str) -> str:
        prefix = "" if self.at_line_start else "\n"
        self.at_line_start = True
        return f"{prefix}{text}\n"

    def render(self, event: dict[str, Any]) -> str:
        kind = event.get("type")
        sid = event.get("stream")
        if kind == "stream.start":
            req = event["request"]
            tag = f" tag={req['tag']}" if req.get("tag") else ""
            if event.get("transport") == "websocket":  # an answer on a WebSocket, not the GET of its upgrade
                warmup = " warm-up" if req.get("warmup") else ""
                tag = f" WebSocket {event.get('connection')} #{req.get('answer', 0)}{warmup}{tag}"
            self.current = sid
            return self._line(self._c(BOLD, f"── {sid} {req['method']} {req['url']} [{req['provider']}]{tag}"))
        out = ""
        if kind in ("text.delta", "reasoning.delta", "tool_call") and sid != self.current:
            self.current = sid  # several streams at once: say whose text follows
            out += self._line(self._c(BOLD, f"── {sid}"))
        if kind == "text.delta":
            text = event["text"]
        elif kind == "reasoning.delta":
            text = self._c(DIM, event["text"])
        elif kind == "tool_call":
            args = json.dumps(event["arguments"], ensure_ascii=False)
            return out + self._line(self._c(MAGENTA, f"[tool_call {event['name']} {args}]"))
        elif kind == "stream.end":
            detail = f"{event.get('finish_reason') or ''} {event['totals']['text_chars']} chars"
            return out + self._line(self._c(GREEN, f"── {sid} end {detail}"))
        elif kind in ("stream.abort", "stream.error"):
            who = f"by {event['by']} " if kind == "stream.abort" else f"{event.get('status')} "
            return out + self._line(self._c(RED, f"── {sid} {kind.split('.')[1]} {who}{event.get('message', '')}"))
        elif kind in NOTICES:
            # A line of its own, then the stream's header again before more of its text:
            # what follows the notice is never taken for the start of an answer.
            self.current = None
            return out + self._line(self._c(YELLOW, f"── {_notice(kind, event)}"))
        else:
            return out
        if event["text"]:  # the text itself: a colour's reset code may follow its line end
            self.at_line_start = event["text"].endswith("\n")
        return out + text


NOTICES = ("stream.stall", "decode.error", "gap", "cutoff", "restart")


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

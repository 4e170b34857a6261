"""A subscriber on the API socket that records every event, for end-to-end tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from ..support.api_http import follow_events

TERMINAL = {"stream.end", "stream.abort", "stream.error"}


class EventLog:
    def __init__(self, socket_path: str, since: int | str = "now") -> None:
        self.events: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._follow, args=(socket_path, since), daemon=True)
        self._thread.start()

    def _follow(self, socket_path: str, since: int | str) -> None:
        for event in follow_events(socket_path, since=since):
            with self._cond:
                self.events.append(event)
                self._cond.notify_all()

    def stream_of(self, tag: str, timeout: float = 20) -> list[dict[str, Any]]:
        """All events of the stream whose request carried `tag`, once it has ended."""
        return self.stream_where(lambda start: start["request"]["tag"] == tag, f"tagged {tag!r}", timeout)

    def stream_where(self, match: Callable[[dict[str, Any]], bool], what: str = "matching",
                     timeout: float = 20) -> list[dict[str, Any]]:
        """All events of the first stream whose stream.start matches, once it has ended."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                starts = [e for e in self.events if e["type"] == "stream.start" and match(e)]
                if starts:
                    sid = starts[0]["stream"]
                    mine = [e for e in self.events if e["stream"] == sid]
                    if mine[-1]["type"] in TERMINAL:
                        return mine
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no finished stream {what}; have {len(self.events)} events")
                self._cond.wait(left)


    def wait_for(self, condition: Callable[[list[dict[str, Any]]], bool], what: str, timeout: float = 20) -> None:
        """Until `condition` holds for the events so far."""
        with self._cond:
            if not self._cond.wait_for(lambda: condition(self.events), timeout):
                raise TimeoutError(f"no {what}; have {len(self.events)} events")


def text_of(events: list[dict[str, Any]]) -> str:
    return "".join(e["text"] for e in events if e["type"] == "text.delta")

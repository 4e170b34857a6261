"""Coalescer: when the taps decode what they were handed.

Every chunk of every routed response is forwarded at once; decoding it may wait a
moment. A chunk arriving within `window` seconds of the last decoding run waits, and
the next chunk of *any* stream that comes after the window (or, if none does, a timer)
decodes everything waiting, stream by stream, then hands the events to the API readers
in one go. A provider sending tokens at human speed gets each one decoded the moment
it arrives; a burst of small chunks is decoded a batch at a time, which costs the
proxy much less per event, and no chunk waits much past the window while others flow.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

from proxy_core.config import defaults


class Decodes(Protocol):
    def decode_pending(self) -> None: ...


class Coalescer:
    def __init__(self, deliver: Callable[[], None], window: float = defaults.DECODE_WINDOW) -> None:
        self.window = window
        self._deliver = deliver  # hands what was published to the readers
        self._waiting: dict[Decodes, None] = {}  # insertion-ordered: streams in arrival order
        self._last_run = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def add(self, tap: Decodes, now: float) -> None:
        """`tap` holds a new chunk, which arrived at `now` (time.perf_counter())."""
        self._waiting[tap] = None
        wait = self.window - (now - self._last_run)
        if wait <= 0:
            self.run(now)
        elif self._timer is None:
            try:
                self._timer = asyncio.get_running_loop().call_later(wait, self.run)
            except RuntimeError:  # no event loop (driven by hand): decode at once
                self.run(now)

    def discard(self, tap: Decodes) -> None:
        """`tap` decoded its chunks itself (its body ended, or was aborted)."""
        self._waiting.pop(tap, None)

    def run(self, now: float | None = None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiting, self._waiting = self._waiting, {}
        if now is None:
            now = time.perf_counter()
        self._last_run = now
        for tap in waiting:
            tap.decode_pending()
        if waiting:
            self._deliver()

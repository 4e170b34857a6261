"""EventPump: feeds one API reader from the hub's ring, as SSE or NDJSON.

The hub calls `pump()` right after the taps publish a batch (at most once per
coalescing window while events pour in, see coalesce.py), so a following reader gets
its events in the same turn of the event loop as the proxied client gets the bytes,
not a turn later, and a burst costs one write per window, not one per event.

A pump writes only while the reader is draining (the kernel took everything written
so far); whatever is published meanwhile waits in the ring (not in a per-reader
queue) and goes out as one batch when the reader has drained. A reader whose backlog
passes `max_lag` events is cut off with a notice saying where to resume.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import tornado.iostream

from .events import Envelope, cutoff_event, dumps, gap_event

if TYPE_CHECKING:
    import tornado.web

    from .hub import Hub

BATCH = 1000  # events read from the ring at a time
BATCH_BYTES = 1 << 20  # and at most this much written before waiting for the reader
KEEPALIVE = b": keep-alive\n\n"


class EventPump:
    def __init__(
        self,
        handler: tornado.web.RequestHandler,
        hub: Hub,
        after: int,
        match: Callable[[Envelope], bool],
        *,
        follow: bool,
        ndjson: bool,
        max_lag: int,
        until_end_of: str | None = None,
    ) -> None:
        self.handler = handler
        self.hub = hub
        self.cursor = after  # the newest offset handed to the reader (or skipped by `match`)
        self.match = match
        self.follow = follow
        self.ndjson = ndjson
        self.max_lag = max_lag
        self.until_end_of = until_end_of
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.last_write = time.monotonic()  # of the last write (the headers, at first)
        self._stream = handler.request.connection.stream  # type: ignore[attr-defined]
        self._newest_at_flush = 0
        self._ended = False  # the reader got everything it asked for

    # Called by the hub after publishing, by the handler, and when a flush completes.
    def pump(self) -> None:
        if self.done.done():
            return
        if self._stream.writing():  # the kernel has not taken the last batch yet
            if self.follow and self.hub.last_offset - self._newest_at_flush > self.max_lag:
                self._cut_off()
            return
        wrote = self._write_available()
        caught_up = self.cursor >= self.hub.last_offset
        if self._ended or (caught_up and (self.hub.closed or not self.follow)):
            self._finish()
        elif wrote:
            self._flush()

    def write_notice(self, notice: dict, offset: int) -> None:
        self._write(dumps(notice), offset)

    def keepalive(self) -> None:
        """A comment line, so proxies and readers see the connection is alive (SSE only)."""
        if not self.ndjson and not self._stream.writing() and not self.done.done():
            self.handler.write(KEEPALIVE)
            self._flush()

    def close(self) -> None:
        """The reader went away."""
        if not self.done.done():
            self.done.set_result(None)

    # -------------------------------------------------------------------------------

    def _write_available(self) -> bool:
        gap, batch = self.hub.read(self.cursor, BATCH)
        wrote = False
        if gap is not None:
            self._write(dumps(gap_event(*gap, self.hub.clock())), gap[1])
            self.hub.metrics.gaps += 1
            self.cursor = gap[1]
            wrote = True
        size = 0
        for env in batch:
            self.cursor = env.offset
            if not self.match(env):
                continue
            self._write(env.json, env.offset)
            size += len(env.json)
            wrote = True
            if self.until_end_of is not None and env.terminal and env.stream == self.until_end_of:
                self._ended = True
                break
            if size > BATCH_BYTES:
                break
        return wrote

    def _write(self, data: bytes, offset: int) -> None:
        if self.ndjson:
            self.handler.write(data + b"\n")
        else:
            self.handler.write(b"id: %d\ndata: %s\n\n" % (offset, data))

    def _flush(self) -> None:
        self._newest_at_flush = self.hub.last_offset
        self.last_write = time.monotonic()
        try:
            flushed = self.handler.flush()
        except tornado.iostream.StreamClosedError:
            self.close()
            return
        # Usually the kernel took it all at once and the next pump() can write again
        # at once; if not, this resumes the reader when it has drained.
        flushed.add_done_callback(self._flushed)

    def _flushed(self, flushed: asyncio.Future[None]) -> None:
        if flushed.cancelled() or flushed.exception() is not None:  # the connection closed
            self.close()
            return
        self.pump()  # what was published meanwhile, or the rest of the history

    def _cut_off(self) -> None:
        lag = self.hub.last_offset - self.cursor
        self.write_notice(cutoff_event(self.cursor, lag, self.hub.clock()), self.cursor)
        self.hub.metrics.cutoffs += 1
        self._finish()

    def _finish(self) -> None:
        try:
            self.handler.finish()
        except (tornado.iostream.StreamClosedError, RuntimeError):
            pass  # already closed by the reader
        self.close()

"""EventPump: feeds one API reader from the hub's ring, as SSE or NDJSON.

The hub calls `pump()` right after the taps publish a batch (at most once per
coalescing window while events pour in, see coalesce.py), so a following reader gets
its events in the same turn of the event loop as the proxied client gets the bytes,
not a turn later, and a burst costs one write per window, not one per event.

A pump writes only while the reader is draining (the kernel took everything written
so far); whatever is published meanwhile waits in the ring (not in a per-reader
queue) and goes out as one batch when the reader has drained. A reader whose backlog
passes `max_lag` events is cut off with a notice saying where to resume.

A reader of one stream reads through that stream's index (Hub.read_stream); any other
filter scans the ring. Either way a pump() that stops before the reader has caught up
always leaves something that calls it again: the flush of what it wrote, or, when a
stretch of the ring held nothing that matched, the next loop turn. Nothing else may
end a reader's turn, or a filtered reader would wait for a publish that never comes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import tornado.iostream

from proxy_core.hub.envelope import Envelope, dumps
from proxy_core.hub.notices import cutoff_event, gap_event

if TYPE_CHECKING:
    import tornado.web

    from proxy_core.hub.hub import Hub, StreamRecord

BATCH = 1000  # events read from the ring at a time
BATCH_BYTES = 1 << 20  # and at most this much written before waiting for the reader
SCAN_PER_TURN = 20 * BATCH  # ring events a filtered reader looks at before the loop turns
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
        stream: StreamRecord | None = None,
    ) -> None:
        self.handler = handler
        self.hub = hub
        self.cursor = after  # the newest offset handed to the reader (or skipped by `match`)
        self.match = match
        self.follow = follow
        self.ndjson = ndjson
        self.max_lag = max_lag
        self.stream = stream  # read only this stream, through its index, up to its terminal event
        self._loop = asyncio.get_running_loop()
        self.done: asyncio.Future[None] = self._loop.create_future()
        self.last_write = time.monotonic()  # of the last write (the headers, at first)
        self._stream: tornado.iostream.IOStream = handler.request.connection.stream  # type: ignore[union-attr]
        self._newest_at_flush = 0
        # Since when a flush the kernel could not take at once has been waiting (None:
        # nothing waits for the reader).
        self._flushing_since: float | None = None
        self._ended = False  # the reader got everything it asked for

    # Called by the hub after publishing, by the handler, and when a flush completes.
    def pump(self) -> None:
        if self.done.done():
            return
        if self._flushing_since is not None:  # the kernel has not taken the last batch yet
            if self.follow and self._backlog_since(self._newest_at_flush) > self.max_lag:
                self._cut_off()
            return  # the flush's completion pumps again
        wrote = self._write_available()
        caught_up = self.cursor >= self._newest()
        # A stream whose terminal event went by in a gap has ended all the same.
        stream_over = self.stream is not None and not self.stream.active
        if self._ended or (caught_up and (self.hub.closed or not self.follow or stream_over)):
            self._finish()
        elif wrote:
            self._flush()  # it, or its completion, pumps again when more waits
        elif not caught_up:
            self._loop.call_soon(self.pump)  # a stretch with nothing that matched

    def write_notice(self, notice: dict, offset: int) -> None:
        self._write(dumps(notice), offset)

    def keepalive(self) -> None:
        """A comment line, so proxies and readers see the connection is alive (SSE only)."""
        if not self.ndjson and self._flushing_since is None and not self.done.done():
            self.handler.write(KEEPALIVE)
            self._flush()

    def close(self) -> None:
        """The reader went away."""
        if not self.done.done():
            self.done.set_result(None)

    # -------------------------------------------------------------------------------

    def _newest(self) -> int:
        """The newest offset this reader could be given."""
        return self.stream.last_offset if self.stream is not None else self.hub.last_offset

    def _backlog_since(self, offset: int) -> int:
        if self.stream is not None:
            return self.stream.index.count_after(offset)
        return self.hub.last_offset - offset

    def _read(self) -> tuple[tuple[int, int] | None, list[Envelope]]:
        if self.stream is not None:
            return self.hub.read_stream(self.stream, self.cursor, BATCH)
        return self.hub.read(self.cursor, BATCH)

    def _write_available(self) -> bool:
        """Write what matches, up to BATCH_BYTES, scanning at most SCAN_PER_TURN events."""
        wrote = False
        size = scanned = 0
        while scanned < SCAN_PER_TURN and size <= BATCH_BYTES and self.cursor < self._newest():
            gap, batch = self._read()
            if gap is not None:
                self._write(dumps(gap_event(*gap, self.hub.clock())), gap[1])
                self.hub.metrics.gaps += 1
                self.cursor = max(self.cursor, gap[1])
                wrote = True
            scanned += len(batch) or 1
            for env in batch:
                self.cursor = env.offset
                if self.match(env):
                    self._write(env.json, env.offset)
                    size += len(env.json)
                    wrote = True
                if self.stream is not None and env.terminal:  # even one the filter skips
                    self._ended = True
                    return wrote
                if size > BATCH_BYTES:
                    break
        return wrote

    def _write(self, data: bytes, offset: int) -> None:
        if self.ndjson:
            self.handler.write(data + b"\n")
        else:
            self.handler.write(b"id: %d\ndata: %s\n\n" % (offset, data))

    def _flush(self) -> None:
        self._newest_at_flush = self._newest()
        self.last_write = time.monotonic()
        try:
            flushed = self.handler.flush()
        except tornado.iostream.StreamClosedError:
            self.close()
            return
        if self._stream.writing():
            # The kernel did not take it all: resume when the reader has drained. No
            # other flush until then: tornado completes only a connection's newest
            # flush future, so a second one would leave this callback, and with it
            # the pump, unrun.
            self._flushing_since = self.last_write
            flushed.add_done_callback(self._flushed)
        elif self.cursor < self._newest():
            # Usually the kernel takes it all at once: the next publish pumps again, or
            # the next loop turn does when more is waiting. Waiting for the flush
            # future instead costs two loop turns a batch, and under load the reader
            # then falls 100-250 ms behind.
            self._loop.call_soon(self.pump)
    def stalled_for(self) -> float:
        """Seconds the last batch written has been waiting for the reader's socket to take it."""
        if self._flushing_since is None:
            return 0.0
        return time.monotonic() - self._flushing_since

    def abandon(self) -> None:
        """Close a reader that stopped reading; it resumes from its offset if it comes back."""
        self._stream.close()
        self.close()

    def _flushed(self, flushed: asyncio.Future[None]) -> None:
        self._flushing_since = None
        if flushed.cancelled() or flushed.exception() is not None:  # the connection closed
            self.close()
            return
        self.pump()  # what was published meanwhile, or the rest of the history

    def _cut_off(self) -> None:
        lag = self._backlog_since(self.cursor)
        self.write_notice(cutoff_event(self.cursor, lag, self.hub.clock()), self.cursor)
        self.hub.metrics.cutoffs += 1
        self._finish()

    def _finish(self) -> None:
        try:
            self.handler.finish()
        except (tornado.iostream.StreamClosedError, RuntimeError):
            pass  # already closed by the reader
        self.close()

"""The hub: sequencing, the ring buffer of recent events, stream state, and wake-ups.

Every payload enters through `publish`, which gives it the stream's next `seq` and the
next hub-wide `offset` (1, 2, 3 ...). Events live in a fixed-size ring indexed by
offset, so a reader at any offset is served in O(1) and a slow reader costs the proxy
nothing: it simply finds, when it comes back, that the ring has moved past it, and is
told so with a `gap`. Each stream also keeps the offsets of its own events (an
OffsetIndex), so reading one stream costs that stream's events, not the ring's.
Publishing never waits and never allocates per subscriber.

Consumers plug in three ways, by what they need: a *sink* is called with every envelope
as it is published (the capture writer: it must only queue); a *listener* (an API
reader's pump) is told once per batch that there is something new and reads it from
the ring itself; `wait()` is for a coroutine that waits for one offset.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from array import array
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from proxy_core.config import defaults
from proxy_core.hub.envelope import Envelope
from proxy_core.hub.handoffs import Handoffs
from proxy_core.hub.metrics import Metrics
from proxy_core.payloads import (
    Citation,
    Media,
    Payload,
    ProviderEvent,
    ReasoningDelta,
    RefusalDelta,
    StreamStart,
    TextDelta,
    ToolCall,
    ToolResult,
    Usage,
)

logger = logging.getLogger(__name__)

# The reassembled message's lists beside the text, and how many entries each keeps.
ITEM_LISTS: dict[type[Payload], str] = {
    ToolResult: "tool_results", Citation: "citations", Media: "media", ProviderEvent: "extra",
}
MAX_MESSAGE_ITEMS = 1000
JOIN_PARTS = 64  # the reassembled text's deltas, kept as one string per this many


class Listener(Protocol):
    """A consumer told, once per published batch, to read what is new (`pump`), and
    closed if it fails or when the hub closes."""

    def pump(self) -> None: ...

    def close(self) -> None: ...


STATE_OF_TERMINAL = {"stream.end": "ended", "stream.abort": "aborted", "stream.error": "error"}


class OffsetIndex:
    """The ring offsets of one stream's events, oldest first. The ring's evictions drop
    them from the front, so the index never holds more than the ring does."""

    __slots__ = ("_offsets", "_head", "dropped_through")

    def __init__(self) -> None:
        self._offsets = array("q")
        self._head = 0  # entries before this one were evicted
        self.dropped_through = 0  # the newest evicted offset of this stream (0: none)

    def __len__(self) -> int:
        return len(self._offsets) - self._head

    def append(self, offset: int) -> None:
        self._offsets.append(offset)

    def drop_through(self, offset: int) -> None:
        offsets, head = self._offsets, self._head
        while head < len(offsets) and offsets[head] <= offset:
            self.dropped_through = offsets[head]
            head += 1
        if head > 1024 and 2 * head > len(offsets):  # compact now and then: amortized O(1)
            del offsets[:head]
            head = 0
        self._head = head

    def after(self, offset: int, limit: int) -> list[int]:
        """Up to `limit` offsets greater than `offset`, oldest first."""
        start = bisect_right(self._offsets, offset, self._head)
        return self._offsets[start : start + limit].tolist()

    def count_after(self, offset: int) -> int:
        return len(self._offsets) - bisect_right(self._offsets, offset, self._head)


class TextParts:
    """A reassembled text, delta by delta. A delta is a few characters and a str costs
    about 50 bytes more, so every JOIN_PARTS loose ones are kept as one string: each
    character is copied once more, and a long answer's message costs its text."""

    __slots__ = ("_joined", "_loose")

    def __init__(self) -> None:
        self._joined: list[str] = []
        self._loose: list[str] = []

    def append(self, text: str) -> None:
        loose = self._loose
        loose.append(text)
        if len(loose) == JOIN_PARTS:
            self._joined.append("".join(loose))
            loose.clear()

    def __iter__(self) -> Iterator[str]:
        yield from self._joined
        yield from self._loose

    def __bool__(self) -> bool:
        return bool(self._joined or self._loose)


@dataclass(slots=True)
class StreamRecord:
    """One response being (or having been) captured, and its reassembled message."""

    id: str
    request: dict[str, Any]
    response: dict[str, Any]
    started: float
    state: str = "active"
    next_seq: int = 0
    first_offset: int = 0
    last_offset: int = 0
    ended: float | None = None
    text: TextParts = field(default_factory=lambda: TextParts())
    reasoning: TextParts = field(default_factory=lambda: TextParts())
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    refusal: TextParts = field(default_factory=lambda: TextParts())
    # tool_result, citation, media and provider.event payloads, by kind of list; bounded
    # in number (MAX_MESSAGE_ITEMS each), their size by the event size limit.
    items: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    usage: dict[str, Any] | None = None
    finish_reason: str | None = None
    outcome: dict[str, Any] | None = None
    message_chars: int = 0  # text and reasoning kept so far
    message_limit: int = defaults.MAX_MESSAGE_CHARS
    truncated: bool = False  # the message outgrew message_limit; the events still have it all
    index: OffsetIndex = field(default_factory=OffsetIndex)  # where its events are in the ring
    transport: str = "http"  # or "websocket"
    connection: str | None = None  # the WebSocket it is an answer on
    continued_by: list[str] = field(default_factory=list)  # streams carrying its hand-off on

    @property
    def host(self) -> str:
        return self.request.get("host", "")

    @property
    def active(self) -> bool:
        return self.state == "active"

    def absorb(self, payload: Payload) -> None:
        if isinstance(payload, TextDelta):
            self._keep(self.text, payload.text)
        elif isinstance(payload, ReasoningDelta):
            self._keep(self.reasoning, payload.text)
        elif isinstance(payload, ToolCall):
            self.tool_calls.append(payload.fields())
        elif isinstance(payload, Usage):
            self.usage = payload.fields()
        elif isinstance(payload, RefusalDelta):
            self._keep(self.refusal, payload.text)
        elif isinstance(payload, ToolResult | Citation | Media | ProviderEvent):
            self._keep_item(ITEM_LISTS[type(payload)], payload)
        elif payload.terminal:
            self.state = STATE_OF_TERMINAL[payload.type]
            self.outcome = {"type": payload.type, **payload.fields()}
            self.finish_reason = getattr(payload, "finish_reason", None)

    def _keep(self, parts: TextParts, text: str) -> None:
        """The reassembled message is bounded: memory follows the settings, not the
        length of an answer."""
        room = self.message_limit - self.message_chars
        if len(text) > room:
            self.truncated = True
            text = text[: max(room, 0)]
        if text:
            parts.append(text)
            self.message_chars += len(text)

    def _keep_item(self, name: str, payload: Payload) -> None:
        kept = self.items.setdefault(name, [])
        if len(kept) >= MAX_MESSAGE_ITEMS:
            self.truncated = True
        else:
            kept.append(payload.fields())

    def message(self) -> dict[str, Any]:
        items = self.items
        return {
            "text": "".join(self.text),
            "reasoning": "".join(self.reasoning),
            "refusal": "".join(self.refusal),
            "tool_calls": self.tool_calls,
            "tool_results": items.get("tool_results", []),
            "citations": items.get("citations", []),
            "media": items.get("media", []),
            "extra": items.get("extra", []),
            "usage": self.usage,
            "finish_reason": self.finish_reason,
            "truncated": self.truncated,
        }

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "started": self.started,
            "ended": self.ended,
            "request": self.request,
            "response": self.response,
            "transport": self.transport,
            "connection": self.connection,
            "first_offset": self.first_offset,
            "last_offset": self.last_offset,
            "last_seq": self.next_seq - 1,
            "outcome": self.outcome,
            **({"continued_by": self.continued_by} if self.continued_by else {}),
        }


class Ring:
    """The last `capacity` events, addressed by offset."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("ring capacity must be at least 1")
        self.capacity = capacity
        self._slots: list[Envelope | None] = [None] * capacity
        self.last = 0  # offset of the newest event; 0 when empty

    @property
    def oldest(self) -> int:
        return max(1, self.last - self.capacity + 1)

    def append(self, env: Envelope) -> Envelope | None:
        """Store `env`; the event it pushed out of the ring, if any."""
        slot = env.offset % self.capacity
        evicted = self._slots[slot]
        self._slots[slot] = env
        self.last = env.offset
        return evicted

    def at(self, offset: int) -> Envelope:
        """The event at `offset`, which must be between `oldest` and `last`."""
        return self._slots[offset % self.capacity]  # type: ignore[return-value]

    def read(self, after: int, limit: int) -> list[Envelope]:
        start = max(after + 1, self.oldest)
        stop = min(self.last, start + limit - 1)
        return [self._slots[o % self.capacity] for o in range(start, stop + 1)]  # type: ignore[misc]

    def resized(self, capacity: int) -> Ring:
        ring = Ring(capacity)
        for env in self.read(self.last - capacity, capacity):
            ring.append(env)
        return ring


class Hub:
    def __init__(
        self,
        capacity: int = defaults.BUFFER_EVENTS,
        keep_streams: int = 1000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.instance = secrets.token_hex(4)  # tells readers a restarted process from this one
        self.ring = Ring(capacity)
        self.keep_streams = keep_streams
        self.message_limit = defaults.MAX_MESSAGE_CHARS
        self.clock = clock
        self.streams: OrderedDict[str, StreamRecord] = OrderedDict()
        self._active = 0  # streams with no terminal event yet: trimming is O(1) per new stream
        self.metrics = Metrics()
        self.sinks: list[Callable[[Envelope], None]] = []  # e.g. the capture writer's queue
        self.handoffs = Handoffs()
        self.subscribers = 0  # readers connected to the API now
        self.closed = False
        self._waiters: list[asyncio.Future[None]] = []
        self.listeners: set[Listener] = set()  # following API readers, fed by deliver()
        self._undelivered = False  # published since the last deliver()
        self._delivery_scheduled = False

    @property
    def last_offset(self) -> int:
        return self.ring.last

    def set_capacity(self, capacity: int) -> None:
        if capacity != self.ring.capacity:
            self.ring = self.ring.resized(capacity)

    # Writing -----------------------------------------------------------------------

    def open_stream(
        self, request: dict[str, Any], response: dict[str, Any], stream_id: str | None = None,
        transport: str = "http", connection: str | None = None, instance: str | None = None,
    ) -> StreamRecord:
        """A new stream, with its stream.start already published. `instance`: the process
        that captured it, when not this one (a capture re-served). A stream that carries
        on another's hand-off says so: `request.continues`."""
        stream_id = stream_id or secrets.token_hex(6)
        if (continues := self.handoffs.claim(request)) is not None:
            request = {**request, "continues": continues}
            if (handed_off := self.streams.get(continues)) is not None:
                handed_off.continued_by.append(stream_id)
        record = StreamRecord(stream_id, request, response, self.clock(),
                              message_limit=self.message_limit, transport=transport, connection=connection)
        replaced = self.streams.get(record.id)
        self._active += 0 if replaced is not None and replaced.active else 1
        self.streams[record.id] = record
        self.publish(record.id, StreamStart(request, response, transport, connection, instance or self.instance))
        self._trim_streams()
        return record

    def publish(self, stream_id: str, payload: Payload) -> Envelope | None:
        record = self.streams.get(stream_id)
        if record is None or not record.active:
            # The terminal event was the last word; anything later is a caller bug.
            logger.error("streamtap: dropped %s for finished or unknown stream %s", payload.type, stream_id)
            return None
        offset = self.ring.last + 1
        env = Envelope.make(offset, stream_id, record.next_seq, self.clock(), payload, record.host)
        record.next_seq += 1
        if not record.first_offset:
            record.first_offset = offset
        record.last_offset = offset
        record.index.append(offset)
        record.absorb(payload)
        terminal = payload.terminal
        if terminal:
            record.ended = env.time
            self._active -= 1
        evicted = self.ring.append(env)
        if evicted is not None and (owner := self.streams.get(evicted.stream)) is not None:
            owner.index.drop_through(evicted.offset)
        for sink in self.sinks:
            sink(env)
        self.metrics.events[payload.type] += 1
        if isinstance(payload, ProviderEvent):
            self.metrics.count_provider_event(record.request.get("provider", ""), payload.provider_type)
            self.handoffs.offered(stream_id, payload.provider_type, payload.data)
        if terminal:
            self.metrics.streams[(record.request.get("provider", ""), payload.type.removeprefix("stream."))] += 1
        if self._waiters:  # the common case, once per event: nobody to wake
            self._wake()
        self._undelivered = True
        if self.listeners and not self._delivery_scheduled:
            # Publishers that do not call deliver() themselves are served next turn.
            self._delivery_scheduled = True
            asyncio.get_running_loop().call_soon(self._deliver_if_due)
        return env

    def follow(self, listener: Listener) -> None:
        self.listeners.add(listener)

    def unfollow(self, listener: Listener) -> None:
        self.listeners.discard(listener)

    def deliver(self) -> None:
        """Hand what was published to the following readers now. The tap calls this
        after each batch, so readers get events in the same loop turn as the client."""
        self._undelivered = False
        for listener in list(self.listeners):
            try:
                listener.pump()
            except Exception:  # this runs inside the proxy's stream callback: never raise there
                logger.exception("streamtap: an API reader failed; closing it")
                self.listeners.discard(listener)
                listener.close()

    def _deliver_if_due(self) -> None:
        self._delivery_scheduled = False
        if self._undelivered:  # else the taps delivered it already, this turn
            self.deliver()

    def forget_finished(self) -> int:
        gone = [sid for sid, r in self.streams.items() if not r.active]
        for sid in gone:
            del self.streams[sid]
        return len(gone)

    def close(self) -> None:
        self.closed = True
        self._wake()
        self.deliver()

    async def close_and_drain(self, timeout: float = 2.0) -> None:
        """Close, then give following readers up to `timeout` seconds to receive what
        was published and end their responses."""
        self.close()
        deadline = asyncio.get_running_loop().time() + timeout
        while self.subscribers and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)

    # Reading -----------------------------------------------------------------------

    def read(self, after: int, limit: int = 1000) -> tuple[tuple[int, int] | None, list[Envelope]]:
        """Events with offset > `after`, oldest first, and the (from, to) offsets lost
        when the ring no longer holds some of them."""
        oldest = self.ring.oldest
        gap = (after + 1, oldest - 1) if self.ring.last and after + 1 < oldest else None
        return gap, self.ring.read(after, limit)

    def read_stream(
        self, record: StreamRecord, after: int, limit: int = 1000
    ) -> tuple[tuple[int, int] | None, list[Envelope]]:
        """`read` for one stream, through its index: the cost is that stream's events,
        whatever the ring holds. A gap is reported only when this stream lost events."""
        offsets = record.index.after(after, limit)
        lost_through = record.index.dropped_through
        # After a resize (or once the record is forgotten) the index may still name
        # offsets the ring has dropped: those are lost too.
        kept = bisect_left(offsets, self.ring.oldest)
        if kept:
            lost_through = max(lost_through, offsets[kept - 1])
            offsets = offsets[kept:]
        gap = (after + 1, lost_through) if lost_through > after else None
        return gap, [self.ring.at(o) for o in offsets]

    @property
    def waiting(self) -> int:
        """Coroutines in `wait()` now."""
        return len(self._waiters)

    async def wait(self, after: int, timeout: float | None = None) -> bool:
        """Wait until an event past `after` exists (True) or the timeout passes (False)."""
        if self.ring.last > after or self.closed:
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            return False
        finally:
            if fut in self._waiters:
                self._waiters.remove(fut)
        return True

    @property
    def active_streams(self) -> int:
        return self._active

    # -------------------------------------------------------------------------------

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def _trim_streams(self) -> None:
        finished = len(self.streams) - self.active_streams
        if finished <= self.keep_streams:
            return
        excess, oldest = finished - self.keep_streams, []
        for sid, r in self.streams.items():  # oldest first: the finished ones are near the front
            if not r.active:
                oldest.append(sid)
                if len(oldest) == excess:
                    break
        for sid in oldest:
            del self.streams[sid]


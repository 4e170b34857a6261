"""SinkRunner: the hub's events to one broker, in order, through a spool, never
blocking the proxy.

The hub calls `put(env)` for every event: a list append, nothing more. Two tasks on the
proxy's loop do the rest, each step short (a few hundred µs; about 1 ms at most):

- The spooler waits LINGER after the first event put, so that events come in batches,
  then turns what was put into spool lines. It places them in the spool (positions and
  bounds are counted in memory) and hands the bytes to the sink's own spool thread,
  which writes them to the files without the loop waiting for it. It keeps the last
  MEMORY of them in memory too, so that while the broker keeps up nothing is read back
  from disk. A full spool drops what does not fit and records a gap (counted, and sent
  to the broker as a `gap` message in its place).
- The sender sends the oldest unsent lines to the broker in slices of at most SLICE
  messages, each confirmed before the next (from memory, or read back from the files
  BATCH lines at a time when memory no longer has them: after an outage, or a restart).
  It counts what the broker confirmed, and writes that position to disk at most every
  ACK_INTERVAL. A broker that is down or refuses is retried with backoff while the
  spooler goes on.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import time
from abc import ABC, abstractmethod
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import msgspec

from proxy_core.hub.envelope import Envelope, dumps
from proxy_core.hub.metrics import Metrics
from proxy_core.sinks.spool import Position, Spool, Writes

logger = logging.getLogger(__name__)

LINGER = 0.02  # s from the first event put to its spooling and sending: batches fill
SLICE = 50  # messages per broker send: what one send holds the loop for (~1 ms)
BATCH = 500  # lines read back from the spool's files at a time
MEMORY = 2000  # spooled messages also kept in memory, to send without reading them back
SPOOL_STEP = 256  # events spooled per step on the loop (a burst is spooled in several)
ACK_INTERVAL = 0.5  # s: the confirmed position is written to disk at most this often
GAP_INTERVAL = 1.0  # s: at most one gap message this often while the spool stays full
MAX_BACKOFF = 5.0


class SinkMessage(NamedTuple):
    """One event as a broker gets it: who published it, its place, and its JSON. (A
    tuple: one is made per event.)"""

    instance: str
    stream: str | None
    seq: int | None  # for a gap message (no stream): its number, per instance
    provider: str
    type: str
    event: bytes  # the event's JSON, as the API sends it

    @property
    def dedup_key(self) -> str:
        if self.stream:
            return f"{self.instance}:{self.stream}:{self.seq}"
        return f"{self.instance}:{self.type}" if self.seq is None else f"{self.instance}:{self.type}:{self.seq}"


class Broker(ABC):
    name = "broker"
    # The client library's modules, imported by the runner in a thread before it first
    # connects: a first import takes up to most of a second, which on the proxy's loop
    # would hold up every client.
    client_modules: tuple[str, ...] = ()

    @abstractmethod
    async def connect(self) -> None: ...

    @abstractmethod
    async def send(self, messages: list[SinkMessage]) -> None:
        """Every message confirmed by the broker, in order; raises if not all were."""

    @abstractmethod
    async def close(self) -> None: ...


_decode_head = msgspec.json.Decoder(dict[str, Any]).decode


class SinkRunner:
    def __init__(self, broker: Broker, spool_dir: Path, spool_bytes: int, instance: str,
                 metrics: Metrics | None = None, linger: float = LINGER, ack_interval: float = ACK_INTERVAL) -> None:
        self.broker = broker
        self.metrics = metrics or Metrics()
        self.instance = instance
        self.linger = linger
        self.ack_interval = ack_interval
        self.spool = Spool(spool_dir, spool_bytes)
        self.sent = 0
        self.gaps = 0  # events dropped because the spool was full
        self.connected = False
        self._down_said = False  # "spooling until it is back" said once per outage, not per retry
        self._incoming: list[Envelope] = []
        self._idle = True  # the spooler waits for a first event
        self._wake = asyncio.Event()  # for the spooler: an event was put (or stop)
        self._ready = asyncio.Event()  # for the sender: something was spooled (or stop)
        self._streams: dict[str, tuple[str, bytes]] = {}  # stream -> (provider, its lines' head up to seq)
        self._tails: dict[tuple[str, str], bytes] = {}  # (provider, type) -> its lines' head after seq
        # Sending: everything before `_cursor` is confirmed, in flight or in `_disk`;
        # `_memory` holds the lines from `_mem_start` to the spool's end; the lines
        # from `_cursor` to `_mem_start` are read back from the files.
        self._cursor = self.spool.confirmed
        self._mem_start = self.spool.end
        self._memory: deque[tuple[Position, SinkMessage]] = deque()
        self._disk: deque[tuple[Position, bytes]] = deque()
        self._inflight: tuple[list[SinkMessage], Position] | None = None
        # A gap: events dropped since the last gap message, and when that was placed.
        self._dropped = 0
        self._gap_at = float("-inf")
        self._gap_no = 0
        # Persisting the confirmed position.
        self._persisted = self.spool.confirmed
        self._persist_timer: asyncio.TimerHandle | None = None
        self._io = ThreadPoolExecutor(1, thread_name_prefix="streamtap-sink-spool")
        self._io_failed: BaseException | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._spooled_all = False
        self._closing = False

    # On the proxy's loop: cheap --------------------------------------------------------

    def put(self, env: Envelope) -> None:
        """All a sink does on the hub's path: a list append (the envelope is immutable)."""
        self._incoming.append(env)
        if self._idle:
            self._idle = False
            self._wake.set()

    # The tasks ---------------------------------------------------------------------------

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._io.submit(int)  # its thread starts now rather than at the first event (a ms or so)
        self._tasks = [loop.create_task(self._spooler(), name=f"streamtap sink {self.broker.name} spooler"),
                       loop.create_task(self._sender(), name=f"streamtap sink {self.broker.name}")]

    async def stop(self, timeout: float = 5.0) -> None:
        """Send what is spooled for up to `timeout` seconds, then stop (the rest stays
        spooled for the next start)."""
        self._closing = True
        self._wake.set()
        self._ready.set()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
            for task in self._tasks:
                if not task.cancelled() and (e := task.exception()) is not None:
                    logger.error(f"streamtap: sink {self.broker.name} failed", exc_info=e)
        while self._incoming or self._dropped:  # what came too late to be sent: spooled for the next start
            self._spool_step(time.monotonic(), gap_now=True)
        if self._persist_timer is not None:
            self._persist_timer.cancel()
            self._persist_timer = None
        self._persist()
        self._io.submit(self.spool.close)
        await asyncio.to_thread(self._io.shutdown)
        await self.broker.close()

    # The spooler -------------------------------------------------------------------------

    async def _spooler(self) -> None:
        filling = time.monotonic()  # since when what is put waits for a step
        try:
            while True:
                if not self._incoming:
                    if self._closing:
                        if self._dropped:
                            self._spool_step(time.monotonic(), gap_now=True)
                        return
                    self._idle = True
                    self._wake.clear()
                    if self._dropped:  # a gap is open: its message goes out within GAP_INTERVAL
                        try:
                            async with asyncio.timeout(max(0.0, self._gap_at + GAP_INTERVAL - time.monotonic())):
                                await self._wake.wait()
                        except TimeoutError:
                            self._spool_step(time.monotonic(), gap_now=True)
                            continue
                    else:
                        await self._wake.wait()
                    filling = time.monotonic()
                if not self._closing and len(self._incoming) < SPOOL_STEP:
                    if (wait := self.linger - (time.monotonic() - filling)) > 0:
                        await asyncio.sleep(wait)  # let the batch fill
                self._spool_step(filling := time.monotonic())
                if len(self._incoming) >= SPOOL_STEP:
                    await asyncio.sleep(0)  # a burst is spooled a step at a time
        finally:
            self._spooled_all = True
            self._ready.set()

    def _spool_step(self, now: float, gap_now: bool = False) -> None:
        """Up to SPOOL_STEP of what was put, as spool lines (who, where, then the event's
        JSON): placed in the spool, handed to the spool thread, kept in memory. An open
        gap's message is placed before the next event that fits, or once GAP_INTERVAL
        has passed since the last one (`gap_now`: at once)."""
        if len(self._incoming) <= SPOOL_STEP:
            envs, self._incoming = self._incoming, []
        else:
            envs = self._incoming[:SPOOL_STEP]
            del self._incoming[:SPOOL_STEP]
        lines: list[bytes] = []
        messages: list[SinkMessage] = []
        streams, tails, instance = self._streams, self._tails, self.instance
        for env in envs:
            stream = env.stream
            if (known := streams.get(stream)) is None or env.type == "stream.start":
                provider = ""
                if env.type == "stream.start":
                    provider = json.loads(env.json).get("request", {}).get("provider", "") or "unknown"
                known = streams[stream] = (provider, b'{"instance":%s,"stream":%s,"seq":' % (
                    dumps(instance), dumps(stream)))
            provider, head = known
            if env.terminal:
                del streams[stream]
            if (tail := tails.get((provider, env.type))) is None:
                if len(tails) > 10_000:
                    tails.clear()
                tail = tails[provider, env.type] = b',"provider":%s,"type":%s}' % (dumps(provider), dumps(env.type))
            # The head is the JSON of {instance, stream, seq, provider, type}, put together
            # from pieces made once per stream: this runs for every event.
            lines.append(b"%s%d%s\t%s" % (head, env.seq, tail, env.json))
            messages.append(SinkMessage(instance, stream, env.seq, provider, env.type, env.json))
        spool = self.spool
        placed: list[tuple[Position, SinkMessage]] = []
        writes: Writes = []
        i = 0
        while i < len(lines):
            if self._dropped and spool.room(len(lines[i]) + 1):
                self._place_gap(placed, writes, now)  # the gap's message goes where the events were dropped
            positions, more = spool.place(lines, i)
            placed += zip(positions, messages[i:i + len(positions)], strict=True)
            writes += more
            i += len(positions)
            if i < len(lines):  # this one does not fit
                self._dropped += 1
                self.gaps += 1
                self.metrics.sink_gaps[self.broker.name] += 1
                i += 1
        if self._dropped and (gap_now or now - self._gap_at >= GAP_INTERVAL):
            self._place_gap(placed, writes, now)
        if writes:
            self._io.submit(self._write, writes)
        if placed:
            memory = self._memory
            memory.extend(placed)
            while len(memory) > MEMORY:  # the oldest are read back from the files when their turn comes
                self._mem_start = memory.popleft()[0]
            self._ready.set()

    def _place_gap(self, placed: list[tuple[Position, SinkMessage]], writes: Writes, now: float) -> None:
        """The message that says how many events were dropped here (it always fits)."""
        self._gap_no += 1
        event = dumps({"type": "gap", "dropped": self._dropped, "reason": "the sink's spool was full"})
        head = dumps({"instance": self.instance, "stream": None, "seq": self._gap_no, "provider": "", "type": "gap"})
        positions, more = self.spool.place([head + b"\t" + event], force=True)
        placed.append((positions[0], SinkMessage(self.instance, None, self._gap_no, "", "gap", event)))
        writes += more
        logger.warning(f"streamtap: sink {self.broker.name}: spool full, {self._dropped} events dropped (a gap)")
        self._dropped = 0
        self._gap_at = now

    def _write(self, writes: Writes) -> None:
        """In the spool thread."""
        if self._io_failed is not None:
            return
        try:
            self.spool.write(writes)
        except Exception as e:  # the disk is full, say: what is in memory is still sent
            self._io_failed = e
            logger.exception(f"streamtap: sink {self.broker.name}: cannot write its spool")

    # The sender --------------------------------------------------------------------------

    async def _sender(self) -> None:
        for module in self.broker.client_modules:
            try:
                await asyncio.to_thread(importlib.import_module, module)
            except ImportError:
                break  # connect() says what is missing
        backoff = 0.1
        while True:
            batch = await self._next_slice()
            if batch is None:
                return
            messages, end = batch
            try:
                if messages:  # (none: only unreadable lines, skipped)
                    if not self.connected:
                        await self.broker.connect()
                        self.connected = True
                        self._down_said = False
                        logger.info(f"streamtap: sink {self.broker.name} connected")
                    await self.broker.send(messages)
            except Exception as e:  # the broker is down or refused: keep spooling, retry
                if not self._down_said:  # also when it was never reached: the user hears of it
                    self._down_said = True
                    logger.warning(f"streamtap: sink {self.broker.name}: {e}; spooling until it is back")
                self.connected = False
                if self._closing:
                    return
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            backoff = 0.1
            self._inflight = None
            self.sent += len(messages)
            self.metrics.sink_sent[self.broker.name] += len(messages)
            self.spool.confirm(end)
            if self._persist_timer is None:
                self._persist_timer = asyncio.get_running_loop().call_later(self.ack_interval, self._persist)
            if self._disk or self._memory:
                await asyncio.sleep(0)  # catching up: the proxy's own callbacks between two slices

    async def _next_slice(self) -> tuple[list[SinkMessage], Position] | None:
        """The next SLICE messages to send, in spool order, and the position past them;
        None once stopping and everything spooled was sent."""
        while True:
            if self._inflight is not None:  # a retry
                return self._inflight
            if self._disk:
                take = [self._disk.popleft() for _ in range(min(SLICE, len(self._disk)))]
                self._inflight = [m for _, line in take if (m := self._parse(line)) is not None], take[-1][0]
                return self._inflight
            if self._cursor != self._mem_start:  # no longer in memory: read back from the files
                until = self._mem_start
                try:
                    lines = await asyncio.get_running_loop().run_in_executor(
                        self._io, self.spool.read, self._cursor, BATCH, until)
                except Exception:
                    logger.exception(f"streamtap: sink {self.broker.name}: cannot read its spool")
                    lines = []
                if not lines:  # the files lost them (removed by hand, say): go on after them
                    logger.error(f"streamtap: sink {self.broker.name}: spool lines missing before {until}")
                    self._cursor = until
                    continue
                self._disk.extend(lines)
                self._cursor = lines[-1][0]
                continue
            if self._memory:
                memory = self._memory
                take_m = [memory.popleft() for _ in range(min(SLICE, len(memory)))]
                end = take_m[-1][0]
                self._cursor = self._mem_start = end
                self._inflight = [m for _, m in take_m], end
                return self._inflight
            if self._closing and self._spooled_all:
                return None
            self._ready.clear()
            await self._ready.wait()

    def _parse(self, line: bytes) -> SinkMessage | None:
        try:
            return _message(line)
        except (msgspec.DecodeError, KeyError, TypeError):
            logger.error(f"streamtap: sink {self.broker.name}: an unreadable spool line skipped: {line[:200]!r}")
            return None

    def _persist(self) -> None:
        """The confirmed position, to disk (by the spool thread, after the writes before it)."""
        self._persist_timer = None
        position = self.spool.confirmed
        if position != self._persisted:
            self._persisted = position
            self._io.submit(self._persist_io, position)

    def _persist_io(self, position: Position) -> None:
        """In the spool thread."""
        try:
            self.spool.persist(position)
        except Exception:
            logger.exception(f"streamtap: sink {self.broker.name}: cannot record its spool's position")


def _message(line: bytes) -> SinkMessage:
    head, _, event = line.partition(b"\t")
    h = _decode_head(head)
    return SinkMessage(h["instance"], h["stream"], h["seq"], h["provider"], h["type"], event)

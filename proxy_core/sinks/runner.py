"""SinkRunner: the hub's events to one broker, in order, through a spool, never
blocking the proxy.

The hub calls `put(env)` for every event (a queue append). One task moves what was put
into the spool, sends the spool's oldest lines to the broker in batches, and
acknowledges what the broker confirmed. A broker that is down is retried with backoff
while the spool keeps taking events; a full spool drops what does not fit and records a
gap (counted, and sent to the broker as a `gap` message in its place).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import queue
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proxy_core.hub.envelope import Envelope, dumps
from proxy_core.hub.metrics import Metrics
from proxy_core.sinks.spool import Spool

logger = logging.getLogger(__name__)

BATCH = 500
MAX_BACKOFF = 5.0


@dataclass(frozen=True, slots=True)
class SinkMessage:
    """One event as a broker gets it: who published it, its place, and its JSON."""

    instance: str
    stream: str | None
    seq: int | None
    provider: str
    type: str
    event: bytes  # the event's JSON, as the API sends it

    @property
    def dedup_key(self) -> str:
        return f"{self.instance}:{self.stream}:{self.seq}" if self.stream else f"{self.instance}:{self.type}"


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


class SinkRunner:
    def __init__(self, broker: Broker, spool_dir: Path, spool_bytes: int, instance: str,
                 metrics: Metrics | None = None) -> None:
        self.broker = broker
        self.metrics = metrics or Metrics()
        self.instance = instance
        self.spool = Spool(spool_dir, spool_bytes)
        self.sent = 0
        self.gaps = 0  # events dropped because the spool was full
        self.connected = False
        self._incoming: queue.SimpleQueue[Envelope] = queue.SimpleQueue()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._providers: dict[str, str] = {}
        self._closing = False

    # On the proxy's loop: cheap --------------------------------------------------------

    def put(self, env: Envelope) -> None:
        """All a sink does on the proxy's loop: a queue append (the envelope is immutable)."""
        self._incoming.put(env)
        if not self._wake.is_set():
            self._wake.set()

    # The task ----------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"streamtap sink {self.broker.name}")

    async def stop(self, timeout: float = 5.0) -> None:
        """Send what is spooled for up to `timeout` seconds, then stop (the rest stays
        spooled for the next start)."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except TimeoutError:
                self._task.cancel()
        await asyncio.to_thread(self._spool_incoming)
        self.spool.close()
        await self.broker.close()

    async def _run(self) -> None:
        for module in self.broker.client_modules:
            try:
                await asyncio.to_thread(importlib.import_module, module)
            except ImportError:
                break  # connect() says what is missing
        position = self.spool.acked
        backoff = 0.1
        while True:
            self._wake.clear()
            await asyncio.to_thread(self._spool_incoming)
            batch = await asyncio.to_thread(self.spool.read, position, BATCH)
            if not batch:
                if self._closing:
                    return
                await self._wake.wait()
                continue
            try:
                if not self.connected:
                    await self.broker.connect()
                    self.connected = True
                    logger.info(f"streamtap: sink {self.broker.name} connected")
                await self.broker.send([_message(line) for _, line in batch])
            except Exception as e:  # the broker is down or refused: keep spooling, retry
                if self.connected:
                    logger.warning(f"streamtap: sink {self.broker.name}: {e}; spooling until it is back")
                self.connected = False
                if self._closing:
                    return
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            backoff = 0.1
            position = batch[-1][0]
            self.sent += len(batch)
            self.metrics.sink_sent[self.broker.name] += len(batch)
            await asyncio.to_thread(self.spool.ack, position)

    def _spool_incoming(self) -> None:
        """In a thread: what was put, as spool lines (who, where, then the event's JSON)."""
        lines: list[bytes] = []
        providers = self._providers
        while True:
            try:
                env = self._incoming.get_nowait()
            except queue.Empty:
                break
            if env.type == "stream.start":
                providers[env.stream] = json.loads(env.json).get("request", {}).get("provider", "") or "unknown"
            provider = providers.pop(env.stream, "") if env.terminal else providers.get(env.stream, "")
            head = dumps({"instance": self.instance, "stream": env.stream, "seq": env.seq, "provider": provider,
                          "type": env.type})
            lines.append(head + b"\t" + env.json)
        if not lines:
            return
        taken = self.spool.append(lines)
        if taken < len(lines):
            lost = len(lines) - taken
            self.gaps += lost
            self.metrics.sink_gaps[self.broker.name] += lost
            gap = dumps({"instance": self.instance, "stream": None, "seq": None, "provider": "",
                         "type": "gap"}) + b"\t" + dumps({"type": "gap", "dropped": lost,
                                                            "reason": "the sink's spool was full"})
            self.spool.max_bytes += len(gap) + 1  # the gap record itself always fits
            self.spool.append([gap])
            self.spool.max_bytes -= len(gap) + 1
            logger.warning(f"streamtap: sink {self.broker.name}: spool full, {lost} events dropped (a gap)")


def _message(line: bytes) -> SinkMessage:
    head, _, event = line.partition(b"\t")
    h: dict[str, Any] = json.loads(head)
    return SinkMessage(h["instance"], h["stream"], h["seq"], h["provider"], h["type"], event)

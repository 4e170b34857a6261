"""NATS JetStream: one message per event on `<prefix>.<provider>.<stream id>`, with
`Nats-Msg-Id` = instance:stream:seq so that JetStream's duplicate window drops a resend.

`nats://HOST:PORT/PREFIX` (PREFIX default `streamtap`). The JetStream stream (named
after the prefix, upper-cased) is created when missing, with the limits below.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

from proxy_core.sinks.runner import Broker, SinkMessage

STREAM_MAX_AGE = 7 * 24 * 3600.0  # seconds
STREAM_MAX_BYTES = 1 << 30
DUPLICATE_WINDOW = 600.0  # seconds: a resend within this is dropped by JetStream
ACK_TIMEOUT = 10.0  # seconds for a batch's acks


class NatsBroker(Broker):
    name = "nats"
    client_modules = ("nats", "nats.js.api", "nats.js.errors")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.server = f"nats://{parts.hostname}:{parts.port or 4222}"
        self.prefix = parts.path.strip("/").replace("/", ".") or "streamtap"
        self.stream_name = self.prefix.upper().replace(".", "_")
        self._nc: Any = None
        self._js: Any = None
        self._acks: list[asyncio.Future[Any]] = []  # the batch being confirmed
        self.name = f"nats {self.server}/{self.prefix}"

    async def connect(self) -> None:
        try:
            import nats
            from nats.js.api import StreamConfig
            from nats.js.errors import NotFoundError
        except ImportError:
            raise RuntimeError("the nats sink needs nats-py (pip install 'streamtap[sinks]')") from None
        await self.close()
        self._nc = await nats.connect(self.server, connect_timeout=2, max_reconnect_attempts=0,
                                      allow_reconnect=False, closed_cb=self._closed)
        self._js = self._nc.jetstream(timeout=5)
        try:
            await self._js.stream_info(self.stream_name)
        except NotFoundError:
            await self._js.add_stream(StreamConfig(
                name=self.stream_name, subjects=[f"{self.prefix}.>"], max_age=STREAM_MAX_AGE,
                max_bytes=STREAM_MAX_BYTES, duplicate_window=DUPLICATE_WINDOW,
            ))

    async def send(self, messages: list[SinkMessage]) -> None:
        """Published in order without waiting for each ack, then every ack awaited: a
        batch costs one round trip, and a resend after a partial failure is deduped."""
        js = self._js
        acks = self._acks = []
        for m in messages:
            subject = f"{self.prefix}.{_token(m.provider or 'none')}.{_token(m.stream or 'notice')}"
            acks.append(await js.publish_async(subject, m.event, wait_stall=5,
                                               headers={"Nats-Msg-Id": m.dedup_key, "Streamtap-Instance": m.instance}))
        try:
            await asyncio.wait_for(asyncio.gather(*acks), ACK_TIMEOUT)
        finally:
            self._acks = []

    async def _closed(self) -> None:
        """The connection is gone (the broker died, say): the batch's acks will never come,
        and nats-py leaves them pending, so fail them now rather than after ACK_TIMEOUT."""
        for ack in self._acks:
            if not ack.done():
                ack.set_exception(ConnectionError("nats: connection closed before the batch was confirmed"))

    async def close(self) -> None:
        if self._nc is not None:
            nc, self._nc = self._nc, None
            try:
                await nc.close()
            except Exception:
                pass


def _token(text: str) -> str:
    """A subject token: no dots, spaces or wildcards."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text) or "_"

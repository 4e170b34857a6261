"""NATS JetStream: one message per event on `<prefix>.<provider>.<stream id>`, with
`Nats-Msg-Id` = instance:stream:seq so that JetStream's duplicate window drops a resend.

`nats://HOST:PORT/PREFIX` (PREFIX default `streamtap`). The JetStream stream (named
after the prefix, upper-cased) is created when missing, with the limits below.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import msgspec

from proxy_core.sinks.runner import Broker, SinkMessage

STREAM_MAX_AGE = 7 * 24 * 3600.0  # seconds
STREAM_MAX_BYTES = 1 << 30
DUPLICATE_WINDOW = 600.0  # seconds: a resend within this is dropped by JetStream
ACK_TIMEOUT = 10.0  # seconds for a batch's acks

_decode_ack = msgspec.json.Decoder(dict[str, Any]).decode


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
        self._inbox = ""  # the acks' subjects: <inbox><token>
        self._next_token = 0
        self._subjects: dict[tuple[str, str | None], str] = {}  # (provider, stream) -> subject
        self._waiting: set[int] = set()  # the batch's tokens not acked yet
        self._done: asyncio.Future[None] | None = None  # the batch is confirmed (or failed)
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
        self._inbox = self._nc.new_inbox() + "."
        await self._nc.subscribe(self._inbox + "*", cb=self._acked)
        try:
            await self._js.stream_info(self.stream_name)
        except NotFoundError:
            await self._js.add_stream(StreamConfig(
                name=self.stream_name, subjects=[f"{self.prefix}.>"], max_age=STREAM_MAX_AGE,
                max_bytes=STREAM_MAX_BYTES, duplicate_window=DUPLICATE_WINDOW,
            ))

    async def send(self, messages: list[SinkMessage]) -> None:
        """Published in order without waiting for each ack, then every ack awaited: a
        batch costs one round trip, and a resend after a partial failure is deduped.

        JetStream confirms each message with a reply to its own subject under one
        inbox of ours; the acks are counted here (`_acked`) rather than through
        nats-py's publish_async, whose futures, semaphore and PubAck per message cost
        several times what the publish itself does."""
        nc = self._nc
        if nc is None:
            raise ConnectionError("nats: not connected")
        loop = asyncio.get_running_loop()
        first = self._next_token
        self._next_token += len(messages)
        self._waiting = set(range(first, first + len(messages)))
        done = self._done = loop.create_future()
        prefix, inbox, subjects = self.prefix, self._inbox, self._subjects
        try:
            for token, m in enumerate(messages, first):
                if (subject := subjects.get((m.provider, m.stream))) is None:
                    if len(subjects) > 10_000:
                        subjects.clear()
                    subject = subjects[m.provider, m.stream] = \
                        f"{prefix}.{_token(m.provider or 'none')}.{_token(m.stream or 'notice')}"
                await nc.publish(subject, m.event, reply=f"{inbox}{token}",
                                 headers={"Nats-Msg-Id": m.dedup_key, "Streamtap-Instance": m.instance})
            await asyncio.wait_for(done, ACK_TIMEOUT)
        finally:
            self._waiting = set()
            self._done = None

    async def _acked(self, msg: Any) -> None:
        """One message's ack (or refusal) from JetStream."""
        try:
            token = int(msg.subject[len(self._inbox):])
        except ValueError:
            return
        if token not in self._waiting or self._done is None or self._done.done():
            return  # an earlier batch's, come after it failed
        if msg.headers and msg.headers.get("Status") == "503":
            return self._fail(ConnectionError(f"nats: no JetStream stream takes {self.prefix}.>"))
        try:
            reply = _decode_ack(msg.data)
        except msgspec.DecodeError:
            return self._fail(RuntimeError(f"nats: unexpected ack {msg.data[:200]!r}"))
        if "error" in reply:
            error = reply["error"] if isinstance(reply["error"], dict) else {}
            return self._fail(RuntimeError(f"nats: JetStream refused a message: {error.get('description', reply)}"))
        self._waiting.discard(token)
        if not self._waiting:
            self._done.set_result(None)

    def _fail(self, error: BaseException) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_exception(error)

    async def _closed(self) -> None:
        """The connection is gone (the broker died, say): the batch's acks will never come,
        so fail it now rather than after ACK_TIMEOUT."""
        self._fail(ConnectionError("nats: connection closed before the batch was confirmed"))

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

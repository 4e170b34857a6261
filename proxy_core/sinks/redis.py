"""Redis Streams: one entry per event appended to KEY (XADD, bounded with MAXLEN ~),
fields `instance`, `stream`, `seq`, `provider`, `type` and `event` (its JSON).

`redis://HOST:PORT/DB?stream=KEY&maxlen=N` (KEY default `streamtap`, N 1000000). A
resend after a failure can append an event twice: consumers drop entries whose
(instance, stream, seq) they have seen (docs/sinks.md).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from proxy_core.sinks.runner import Broker, SinkMessage

DEFAULT_MAXLEN = 1_000_000


class RedisBroker(Broker):
    client_modules = ("redis.asyncio",)

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        self.url = f"redis://{parts.hostname}:{parts.port or 6379}/{parts.path.strip('/') or '0'}"
        self.key = query.get("stream", ["streamtap"])[0]
        self.maxlen = int(query.get("maxlen", [str(DEFAULT_MAXLEN)])[0])
        self.name = f"redis {self.url}?stream={self.key}"
        self._client: Any = None

    async def connect(self) -> None:
        try:
            import redis.asyncio as redis
        except ImportError:
            raise RuntimeError("the redis sink needs redis-py (pip install 'streamtap[sinks]')") from None
        await self.close()
        self._client = redis.Redis.from_url(self.url, socket_connect_timeout=2, socket_timeout=5)
        await self._client.ping()

    async def send(self, messages: list[SinkMessage]) -> None:
        pipe = self._client.pipeline(transaction=False)
        for m in messages:
            fields = {"instance": m.instance, "stream": m.stream or "", "seq": "" if m.seq is None else m.seq,
                      "provider": m.provider, "type": m.type, "event": m.event}
            pipe.xadd(self.key, fields, maxlen=self.maxlen, approximate=True)
        await pipe.execute()

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            try:
                await client.aclose()
            except Exception:
                pass

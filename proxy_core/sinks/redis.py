"""Redis Streams: one entry per event appended to KEY (XADD, bounded with MAXLEN ~),
fields `instance`, `stream`, `seq`, `provider`, `type` and `event` (its JSON).

`redis://HOST:PORT/DB?stream=KEY&maxlen=N` (KEY default `streamtap`, N 1000000). A
resend after a failure can append an event twice: consumers drop entries whose
(instance, stream, seq) they have seen (docs/sinks.md).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import parse_qs, urlsplit

from proxy_core.sinks.runner import Broker, SinkMessage

logger = logging.getLogger(__name__)

DEFAULT_MAXLEN = 1_000_000

# ARGV[1]: maxlen; ARGV[2]: the batch, six fields per message (instance, stream, seq,
# provider, type, event) each ended by a NUL (a byte that none of them holds: event JSON
# writes control characters escaped). One argument rather than six per message: redis-py
# packs each argument in Python, which would cost more than all the rest.
XADD_ALL = """
local maxlen, data, key = ARGV[1], ARGV[2], KEYS[1]
local pos, n, f = 1, 0, {}
while pos <= #data do
  for i = 1, 6 do
    local stop = string.find(data, '\\0', pos, true)
    f[i] = string.sub(data, pos, stop - 1)
    pos = stop + 1
  end
  redis.call('XADD', key, 'MAXLEN', '~', maxlen, '*', 'instance', f[1], 'stream', f[2], 'seq', f[3],
             'provider', f[4], 'type', f[5], 'event', f[6])
  n = n + 1
end
return n
"""


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
        self._script: Any = None  # XADD_ALL, until the server refuses scripts
        self._response_error: type[Exception] = Exception
        self._driver_info: dict[str, Any] | None = None  # what redis-py says of itself to the server

    async def connect(self) -> None:
        try:
            import redis.asyncio as redis
        except ImportError:
            raise RuntimeError("the redis sink needs redis-py (pip install 'streamtap[sinks]')") from None
        await self.close()
        # redis-py reads its own package metadata (its version, for CLIENT SETINFO) for
        # each connection it makes unless told it, 1 to 10 ms: read once, in a thread.
        if self._driver_info is None:
            try:
                from redis.driver_info import DriverInfo
            except ImportError:  # redis-py before 7: no such thing
                self._driver_info = {}
            else:
                self._driver_info = {"driver_info": await asyncio.to_thread(DriverInfo)}
        self._client = redis.Redis.from_url(self.url, socket_connect_timeout=2, socket_timeout=5,
                                            **self._driver_info)
        await self._client.ping()
        self._response_error = redis.ResponseError
        self._script = self._client.register_script(XADD_ALL)

    async def send(self, messages: list[SinkMessage]) -> None:
        """One EVALSHA per batch, whose script XADDs each message in order: a batch costs
        one command to pack and one reply to parse rather than one of each per message
        (redis-py does both in Python). Where scripts are refused (ACLs, say), a pipeline
        of XADDs, as before."""
        if self._script is not None:
            data = b"".join([b"%s\0%s\0%s\0%s\0%s\0%s\0" % (
                m.instance.encode(), (m.stream or "").encode(), b"" if m.seq is None else b"%d" % m.seq,
                m.provider.encode(), m.type.encode(), m.event) for m in messages])
            if data.count(b"\0") == 6 * len(messages):  # no NUL inside a field (there never is)
                try:
                    await self._script(keys=[self.key], args=[self.maxlen, data])
                    return
                except Exception as e:
                    if not isinstance(e, self._response_error):
                        raise  # the connection, say: retried as a whole
                    logger.info(f"streamtap: sink {self.name}: no scripts ({e}); a pipeline of XADDs instead")
                    self._script = None  # some of the batch may be in: a resend, which consumers dedup
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

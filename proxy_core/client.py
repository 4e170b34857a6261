"""Clients for the streamtap API, on its Unix socket or its TCP listener.

The async client is the one to use in programs:

    async with StreamtapClient("run/streamtap.sock") as tap:   # or url="http://127.0.0.1:8081"
        stream = await tap.next_stream(host="api.openai.com", timeout=30)
        async for ev in tap.events(stream=stream["id"]):
            ...
        message = await tap.message(stream["id"])

`events()` reconnects by itself and resumes from the last offset it delivered: every
event arrives once, in order; events the server no longer holds are announced by a
`gap` event, and a restarted server by a `restart` event. HTTP is spoken with h11.

Without arguments it reads STREAMTAP_API_URL or STREAMTAP_API_SOCKET (as `streamtap env`
exports them), and over TCP the token from STREAMTAP_API_TOKEN, STREAMTAP_API_TOKEN_FILE
or the api-token file streamtap generated beside the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import h11

from proxy_core.config import defaults
from proxy_core.config.api_token import read_token, token_path
from proxy_core.hub.notices import restart_event
from proxy_core.wire.errors import WireError
from proxy_core.wire.ndjson import NDJSONDecoder

CLIENT_HEADER = ("X-Streamtap-Client", "python")  # lets a tokenless TCP API accept DELETE


class StreamtapError(Exception):
    """Base of the client's errors."""


class StreamtapUnavailable(StreamtapError):
    """The API socket could not be reached (within the reconnect timeout)."""


class StreamtapHTTPError(StreamtapError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class StreamNotFound(StreamtapHTTPError):
    pass


class _Connection:
    """One HTTP/1.1 exchange with the API."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 headers: list[tuple[str, str]]) -> None:
        self.reader = reader
        self.writer = writer
        self.headers = headers  # Host, and the token over TCP
        self.h11 = h11.Connection(h11.CLIENT)

    async def send(self, method: str, target: str, headers: list[tuple[str, str]]) -> h11.Response:
        request = h11.Request(method=method, target=target, headers=[*self.headers, CLIENT_HEADER, *headers])
        self.writer.write(self.h11.send(request))
        self.writer.write(self.h11.send(h11.EndOfMessage()))
        await self.writer.drain()
        event = await self._next()
        if not isinstance(event, h11.Response):
            raise ConnectionError(f"unexpected {type(event).__name__} from the API")
        return event

    async def body(self) -> AsyncIterator[bytes]:
        while True:
            event = await self._next()
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                return

    async def read_all(self) -> bytes:
        return b"".join([chunk async for chunk in self.body()])

    async def _next(self) -> Any:
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                data = await self.reader.read(65536)
                if not data and self.h11.their_state is h11.SEND_BODY:
                    raise ConnectionError("the API closed the connection mid-response")
                self.h11.receive_data(data)
                continue
            return event

    def close(self) -> None:
        self.writer.close()


class StreamtapClient:
    def __init__(
        self,
        socket_path: str | None = None,
        *,
        url: str | None = None,
        token: str | None = None,
        connect_timeout: float = 5.0,
        reconnect_timeout: float = 30.0,
    ) -> None:
        if socket_path is None and url is None:
            url = os.environ.get("STREAMTAP_API_URL") or None
        self.socket_path = socket_path or os.environ.get("STREAMTAP_API_SOCKET") or defaults.API_SOCKET
        self.url = url.rstrip("/") if url else None
        self._headers = [("Host", "streamtap")]
        if self.url is not None:
            parts = urlsplit(self.url)
            if parts.scheme != "http" or not parts.hostname or not parts.port:
                raise ValueError(f"url: expected http://HOST:PORT, got {url!r}")
            self._address = (parts.hostname, parts.port)
            self._headers = [("Host", parts.netloc)]
            token = token or _token_from_environment(self.socket_path)
            if token:
                self._headers.append(("Authorization", f"Bearer {token}"))
        self.connect_timeout = connect_timeout
        self.reconnect_timeout = reconnect_timeout
        self._open: set[_Connection] = set()

    async def __aenter__(self) -> StreamtapClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for conn in list(self._open):
            conn.close()
        self._open.clear()

    # Plain requests ---------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        return await self._get_json("/healthz", ok=(200, 503))

    async def streams(self, state: str | None = None) -> list[dict[str, Any]]:
        query = f"?{urlencode({'state': state})}" if state else ""
        return (await self._get_json(f"/v1/streams{query}"))["streams"]

    async def stream(self, stream_id: str) -> dict[str, Any]:
        """The stream's state, request, response and reassembled message."""
        return await self._get_json(f"/v1/streams/{quote(stream_id)}")

    async def message(self, stream_id: str) -> dict[str, Any]:
        """The reassembled message: text, reasoning, tool_calls, usage, finish_reason."""
        return (await self.stream(stream_id))["message"]

    async def next_stream(
        self, host: str | None = None, tag: str | None = None, timeout: float = 30.0, after: int | None = None
    ) -> dict[str, Any]:
        """The first stream matching host and tag that starts after this call (or after
        offset `after`: take `(await tap.health())["last_offset"]` before triggering a
        request, and no race is possible). Raises TimeoutError when none starts within
        `timeout` seconds."""
        params = {k: v for k, v in {"host": host, "tag": tag, "timeout": timeout, "after": after}.items()
                  if v is not None}
        status, body = await self._request("GET", f"/v1/streams/next?{urlencode(params)}")
        if status == 204:
            raise TimeoutError(f"no stream matching host={host!r} tag={tag!r} started within {timeout}s")
        return self._json(status, body, "/v1/streams/next")

    async def forget_finished(self) -> int:
        status, body = await self._request("DELETE", "/v1/streams")
        return self._json(status, body, "/v1/streams")["forgotten"]

    # Following events ---------------------------------------------------------------

    async def events(
        self,
        since: int | str = 0,
        *,
        stream: str | None = None,
        host: str | None = None,
        types: list[str] | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Every event after `since` (an offset, or "now"), live, for ever.

        Survives disconnects, cut-offs and server restarts without loss or duplicates.
        """
        instance: str | None = None
        if since == "now":
            health = await self.health()
            last, instance = int(health["last_offset"]), health.get("instance")
        else:
            last = int(since)
        params: dict[str, str] = {}
        if stream:
            params["stream"] = stream
        if host:
            params["host"] = host
        if types:
            params["types"] = ",".join(types)
        failing_since: float | None = None
        while True:
            try:
                conn = await self._connect()
            except StreamtapUnavailable:
                failing_since = failing_since or time.monotonic()
                if time.monotonic() - failing_since > self.reconnect_timeout:
                    raise
                await asyncio.sleep(0.2)
                continue
            try:
                query = urlencode({**params, "since": last})
                response = await conn.send("GET", f"/v1/events?{query}", [("Accept", "application/x-ndjson")])
                if response.status_code != 200:
                    body = await conn.read_all()
                    raise StreamtapHTTPError(response.status_code, _error_text(body))
                served_by = _header(response, "x-streamtap-instance")
                if instance is not None and served_by and served_by != instance and last:
                    # A new process: its offsets start again at 1. Say so, and read it from its start.
                    yield restart_event(last, served_by, time.time(), previous_instance=instance)
                    last = 0
                    conn.close()
                    instance = served_by
                    continue
                instance = served_by or instance
                failing_since = None
                async for event in _ndjson(conn):
                    kind = event.get("type")
                    if kind == "cutoff":
                        break  # we fell behind: resume at once from where we are
                    if kind == "gap":
                        last = max(last, int(event["to"]))
                    elif kind == "restart":  # the server restarted: its offsets begin again
                        last = 0
                    elif event["offset"] <= last:
                        continue  # already delivered before a reconnect
                    else:
                        last = event["offset"]
                    yield event
            except (ConnectionError, OSError, h11.ProtocolError, asyncio.IncompleteReadError):
                failing_since = failing_since or time.monotonic()
            finally:
                conn.close()
                self._open.discard(conn)
            if failing_since and time.monotonic() - failing_since > self.reconnect_timeout:
                raise StreamtapUnavailable(f"lost the API at {self.where} and could not reconnect")
            await asyncio.sleep(0.05)

    # ---------------------------------------------------------------------------------

    @property
    def where(self) -> str:
        return self.url or f"unix:{self.socket_path}"

    async def _connect(self) -> _Connection:
        try:
            opening = (asyncio.open_connection(*self._address) if self.url is not None
                       else asyncio.open_unix_connection(self.socket_path))
            reader, writer = await asyncio.wait_for(opening, self.connect_timeout)
        except (OSError, TimeoutError) as e:
            raise StreamtapUnavailable(f"cannot connect to the API at {self.where}: {e}") from None
        conn = _Connection(reader, writer, self._headers)
        self._open.add(conn)
        return conn

    async def _request(self, method: str, target: str) -> tuple[int, bytes]:
        conn = await self._connect()
        try:
            response = await conn.send(method, target, [])
            return response.status_code, await conn.read_all()
        except (ConnectionError, OSError, h11.ProtocolError) as e:
            raise StreamtapUnavailable(f"{method} {target}: {e}") from None
        finally:
            conn.close()
            self._open.discard(conn)

    async def _get_json(self, target: str, ok: tuple[int, ...] = (200,)) -> Any:
        status, body = await self._request("GET", target)
        if status in ok:
            return json.loads(body)
        return self._json(status, body, target)

    @staticmethod
    def _json(status: int, body: bytes, target: str) -> Any:
        if status == 404:
            raise StreamNotFound(status, _error_text(body))
        if status >= 400:
            raise StreamtapHTTPError(status, _error_text(body))
        return json.loads(body)


async def _ndjson(conn: _Connection) -> AsyncIterator[dict[str, Any]]:
    """The events of an NDJSON response, as they arrive."""
    lines = NDJSONDecoder(max_event_bytes=1 << 30)  # the server bounds events; this only frames them
    async for chunk in conn.body():
        for item in lines.feed(chunk):
            if isinstance(item, WireError):
                raise StreamtapError(f"the API sent a line that is not JSON ({item.message})")
            yield item.value


def _token_from_environment(socket_path: str) -> str | None:
    if token := os.environ.get("STREAMTAP_API_TOKEN"):
        return token
    path = os.environ.get("STREAMTAP_API_TOKEN_FILE")
    return read_token(Path(path) if path else token_path(socket_path))


def _header(response: h11.Response, name: str) -> str | None:
    for key, value in response.headers:
        if key.decode().lower() == name:
            return value.decode()
    return None


def _error_text(body: bytes) -> str:
    with contextlib.suppress(ValueError):
        return str(json.loads(body).get("error"))
    return body.decode(errors="replace").strip()

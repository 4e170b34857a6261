"""`streamtap replay --serve FILE.jsonl|DIR`: a capture re-emitted on the API, at its own
pace or faster, so that consumers can be tested without a proxy or a provider."""

from __future__ import annotations

import asyncio
import heapq
import json
import logging
import signal
from pathlib import Path
from typing import Any

from proxy_core.api.handlers import make_app
from proxy_core.api.server import ApiHTTPServer, bind_private_unix_socket
from proxy_core.config import defaults
from proxy_core.hub.hub import Hub
from proxy_core.payloads import StreamStart, payload_from_dict
from proxy_core.pipeline.redact import redact_headers, redact_url

logger = logging.getLogger(__name__)


def read_capture(path: Path) -> list[dict[str, Any]]:
    """The events of a capture file, or of every `*.jsonl` in a capture directory: each
    stream in seq order across its part files, the streams interleaved by time."""
    if not path.is_dir():
        return _read_file(path)
    streams: dict[str, list[dict[str, Any]]] = {}
    for file in sorted(path.glob("*.jsonl")):
        for event in _read_file(file):
            streams.setdefault(event.get("stream") or "", []).append(event)
    for events in streams.values():
        events.sort(key=lambda e: e.get("seq") or 0)  # part files come in name order, where _10 is before _2
    # merge, not sort: it keeps each stream's order even where the clock stepped back
    return list(heapq.merge(*streams.values(), key=lambda e: e.get("time") or 0.0))


def _read_file(path: Path) -> list[dict[str, Any]]:
    # Bytes split at \n only: str.splitlines() also splits at U+2028, which JSON leaves raw.
    data = path.read_bytes()
    lines = data.split(b"\n")
    events = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except ValueError as e:  # UnicodeDecodeError included: a cut can land inside a character
            if number == len(lines):  # no newline after it: the writer was killed mid-line
                logger.warning(f"streamtap: {path}:{number}: skipped an incomplete last line (its writer stopped)")
                continue
            raise ValueError(f"{path}:{number}: not JSON ({e})") from None
        if not isinstance(event, dict):
            raise ValueError(f"{path}:{number}: not an event (a JSON object)")
        if event.get("type") == "stream.start":
            _redact(event)
        events.append(event)
    return events


def _redact(start: dict[str, Any]) -> None:
    """Secrets stay masked even in a capture written by hand or by another tool."""
    for side in ("request", "response"):
        info = start.get(side)
        if not isinstance(info, dict):
            continue
        if isinstance(info.get("headers"), dict):
            info["headers"] = redact_headers((str(k), str(v)) for k, v in info["headers"].items())
        for key in ("url", "path"):
            if isinstance(info.get(key), str):
                info[key] = redact_url(info[key])


async def serve_capture(events: list[dict[str, Any]], socket_path: Path, speed: float, linger: bool) -> None:
    hub = Hub(capacity=max(defaults.BUFFER_EVENTS, len(events) + 1))
    server = ApiHTTPServer(make_app(hub))
    server.add_socket(bind_private_unix_socket(socket_path))
    print(f"streamtap: serving {len(events)} events on unix:{socket_path}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        previous: float | None = None
        for event in events:
            if speed > 0 and previous is not None and event.get("time"):
                await asyncio.sleep(max(0.0, (event["time"] - previous) / speed))
            previous = event.get("time") or previous
            payload = payload_from_dict(event)
            if isinstance(payload, StreamStart):
                hub.open_stream(payload.request, payload.response, stream_id=event["stream"],
                                transport=payload.transport, connection=payload.connection,
                                instance=payload.instance or None)
            else:
                hub.publish(event["stream"], payload)
        print(f"streamtap: replayed {len(events)} events", flush=True)
        if linger:
            await stop.wait()
    finally:
        await hub.close_and_drain()
        server.stop()
        socket_path.unlink(missing_ok=True)

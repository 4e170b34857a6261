"""`streamtap replay FILE`: the events of a saved mitmproxy flow file (`mitmdump -w`),
decoded by the same pipeline the proxy runs, as NDJSON."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mitmproxy import http, io

from proxy_core.config.routes import RouteTable
from proxy_core.hub.hub import Hub
from proxy_core.hub.taps import FlowTap
from proxy_core.mitm.flowinfo import aborted_by, request_info, response_info
from proxy_core.mitm.routing import PROVIDER
from proxy_core.mitm.websocket_capture import WebSocketCapture
from proxy_core.payloads import DecodeError
from proxy_core.pipeline.tap import StreamTap
from proxy_core.pipeline.websocket import WEBSOCKET_ONLY


def replay_flows(path: Path, routes: RouteTable, hub: Hub | None = None) -> Iterator[dict[str, Any]]:
    """Every event of every routed flow in the file, in order."""
    hub = hub or Hub(capacity=1_000_000)
    with path.open("rb") as f:
        for flow in io.FlowReader(f).stream():
            if not isinstance(flow, http.HTTPFlow) or flow.response is None:
                continue
            route = routes.match(flow.request.pretty_host, flow.request.path)
            if route is None:
                continue
            seen = hub.last_offset
            if flow.websocket is not None:  # its answers, as WebSocketCapture records them live
                _replay_websocket(flow, route.provider, hub)
                _, events = hub.read(seen, hub.last_offset - seen)
                yield from (env.to_dict() for env in events)
                continue
            if route.provider in WEBSOCKET_ONLY:
                continue
            response = flow.response
            record = hub.open_stream(request_info(flow, route.provider), response_info(response))
            tap = StreamTap(route.provider, response.status_code, response.headers.get("content-type"),
                            response.headers.get("content-encoding"))
            flow_tap = FlowTap(hub, record, tap)
            body = response.raw_content
            if body is None:
                flow_tap.publish([DecodeError("the flow file holds no body (it was streamed when saved)", 0)])
            else:
                flow_tap(body)
            if flow.error is not None:
                flow_tap.abort(aborted_by(flow.error.msg), flow.error.msg)
            else:
                flow_tap(b"")
            _, events = hub.read(seen, hub.last_offset - seen)
            yield from (env.to_dict() for env in events)


def _replay_websocket(flow: http.HTTPFlow, provider: str, hub: Hub) -> None:
    """A saved WebSocket flow's messages through the live addon's hooks, in order. (A flow
    saved by streamtap itself holds only its last message: it keeps no more.)"""
    assert flow.websocket is not None
    capture = WebSocketCapture(hub)
    flow.metadata[PROVIDER] = provider
    messages, flow.websocket.messages = list(flow.websocket.messages), []
    capture.websocket_start(flow)
    for message in messages:
        flow.websocket.messages.append(message)
        capture.websocket_message(flow)
    if flow.websocket.close_code is not None or flow.websocket.timestamp_end is not None:
        capture.websocket_end(flow)
    else:  # saved while open: what was in flight did not end
        capture.done()

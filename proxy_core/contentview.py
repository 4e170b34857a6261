"""A mitmproxy contentview named "streamtap": a captured stream shown as its reassembled
message (text, reasoning, tool calls, usage, finish reason), chosen automatically for
routed responses in mitmproxy and mitmweb.

A response streamed through the tap keeps no body in mitmproxy; the view then shows
the message the hub reassembled. A body that was kept (or loaded from a flow file) is
decoded by the same pipeline the proxy runs.
"""

from __future__ import annotations

import json
from typing import Any

from mitmproxy import contentviews, http
from mitmproxy.contentviews import Contentview, Metadata

from .addons.capture import TAPPED
from .addons.routing import ROUTE, default_route_specs
from .hub import StreamRecord
from .routes import RouteTable, parse_route
from .tap import StreamTap

_DEFAULT_ROUTES = RouteTable([parse_route(s) for s in default_route_specs()])


def _route(flow: Any):
    if not isinstance(flow, http.HTTPFlow):
        return None
    return flow.metadata.get(ROUTE) or _DEFAULT_ROUTES.match(flow.request.pretty_host, flow.request.path)


class StreamtapContentview(Contentview):
    @property
    def name(self) -> str:
        return "streamtap"

    def render_priority(self, data: bytes, metadata: Metadata) -> float:
        flow = metadata.flow
        is_response = isinstance(flow, http.HTTPFlow) and metadata.http_message is flow.response
        return 2.0 if is_response and _route(flow) is not None else -1

    def prettify(self, data: bytes, metadata: Metadata) -> str:
        flow = metadata.flow
        route = _route(flow)
        if route is None:
            raise ValueError("not a routed AI response")
        flow_tap = flow.metadata.get(TAPPED) if flow is not None else None
        if not data and flow_tap is not None:
            return render(flow_tap.record.message(), flow_tap.record.state)
        response = flow.response
        tap = StreamTap(route.provider, response.status_code, metadata.content_type, None)
        record = StreamRecord("view", {}, {}, 0.0)
        for payload in tap.feed(data) + tap.close():
            record.absorb(payload)
        outcome = tap.outcome(0)
        record.absorb(outcome)
        message = record.message()
        if outcome.type == "stream.error":
            message["error"] = getattr(outcome, "message", "")
        return render(message, record.state)


def render(message: dict[str, Any], state: str) -> str:
    parts = [f"state: {state}    finish_reason: {message.get('finish_reason')}"]
    if message.get("error"):
        parts.append(f"error: {message['error']}")
    if message.get("reasoning"):
        parts += ["", "── reasoning ──", message["reasoning"]]
    parts += ["", "── text ──", message.get("text", "")]
    for call in message.get("tool_calls") or []:
        parts += ["", f"── tool call {call.get('name')} ({call.get('id')}) ──",
                  json.dumps(call.get("arguments"), ensure_ascii=False, indent=2)]
    if message.get("usage"):
        parts += ["", f"usage: {json.dumps(message['usage'])}"]
    return "\n".join(parts)


def register() -> None:
    if "streamtap" not in contentviews.registry.keys():
        contentviews.add(StreamtapContentview)

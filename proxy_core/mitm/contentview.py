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

from mitmproxy import contentviews, ctx, http
from mitmproxy.contentviews import Contentview, Metadata

from proxy_core.config.routes import RouteTable, parse_route
from proxy_core.hub.hub import StreamRecord
from proxy_core.mitm.routing import PROVIDER, default_route_specs
from proxy_core.mitm.stream_capture import STREAM_ID
from proxy_core.pipeline.tap import StreamTap

_DEFAULT_ROUTES = RouteTable([parse_route(s) for s in default_route_specs()])


def _provider(flow: Any) -> str | None:
    if not isinstance(flow, http.HTTPFlow):
        return None
    if provider := flow.metadata.get(PROVIDER):
        return provider
    route = _DEFAULT_ROUTES.match(flow.request.pretty_host, flow.request.path)
    return route.provider if route is not None else None


def _captured(flow: http.HTTPFlow) -> StreamRecord | None:
    """The hub's record of this flow's stream, when the capture addon of this process
    streamed it."""
    capture = ctx.master.addons.get("streamcapture") if getattr(ctx, "master", None) else None
    stream_id = flow.metadata.get(STREAM_ID)
    return capture.hub.streams.get(stream_id) if capture is not None and stream_id else None


class StreamtapContentview(Contentview):
    @property
    def name(self) -> str:
        return "streamtap"

    def render_priority(self, data: bytes, metadata: Metadata) -> float:
        flow = metadata.flow
        is_response = isinstance(flow, http.HTTPFlow) and metadata.http_message is flow.response
        return 2.0 if is_response and _provider(flow) is not None else -1

    def prettify(self, data: bytes, metadata: Metadata) -> str:
        flow = metadata.flow
        provider = _provider(flow) if isinstance(flow, http.HTTPFlow) else None
        if provider is None or not isinstance(flow, http.HTTPFlow) or flow.response is None:
            raise ValueError("not a routed AI response")
        if not data and (record := _captured(flow)) is not None:
            return render(record.message(), record.state)
        response = flow.response
        tap = StreamTap(provider, response.status_code, metadata.content_type, None)
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

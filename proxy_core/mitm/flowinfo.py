"""What a stream.start says about a flow: its request and response, secrets redacted."""

from __future__ import annotations

from typing import Any

from mitmproxy import http

from proxy_core.pipeline.redact import redact_headers, redact_url
from proxy_core.pipeline.request_summary import request_summary

TAG = "streamtap.tag"


def aborted_by(message: str) -> str:
    lowered = message.lower()
    if "killed" in lowered and "client" not in lowered:
        return "proxy"
    return "client" if "client" in lowered else "upstream"


def request_info(flow: http.HTTPFlow, provider: str) -> dict[str, Any]:
    request = flow.request
    peer = flow.client_conn.peername
    # The body as sent (raw_content: still content-encoded), read for its model and
    # stream flag only; a streamed request body (request.stream) is not held: None.
    summary = request_summary(request.raw_content, request.headers.get("content-encoding"), request.path)
    return {
        "method": request.method,
        "url": redact_url(request.pretty_url),
        "host": request.pretty_host,
        "path": redact_url(request.path),
        "provider": provider,
        "tag": flow.metadata.get(TAG),
        "client": f"{peer[0]}:{peer[1]}" if peer else None,
        "http_version": request.http_version,
        "headers": redact_headers(request.headers.items(multi=True)),
        **summary,
    }


def response_info(response: http.Response) -> dict[str, Any]:
    return {
        "status": response.status_code,
        "headers": redact_headers(response.headers.items(multi=True)),
        "content_type": response.headers.get("content-type"),
        "content_encoding": response.headers.get("content-encoding"),
    }

"""The live page's source, served at GET /: every event type it shows, set as text only,
under the same Content-Security-Policy. tests/e2e/test_browser.py runs it in Chromium."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from proxy_core.api import handlers as api
from proxy_core.api.server import ApiHTTPServer, bind_private_unix_socket
from proxy_core.api.webpage import PAGE
from proxy_core.hub.hub import Hub

CSP = ("default-src 'self'; img-src 'self' data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
       "connect-src 'self'")
SCRIPT = PAGE.split("<script>", 1)[1].split("</script>", 1)[0]
# Types the page shows in its own way; the rest of docs/events.md's are notices to the
# reader (no stream's), which the page has no card for.
SHOWN = {"stream.start", "text.delta", "reasoning.delta", "refusal.delta", "tool_call", "tool_result", "usage",
         "citation", "media", "signature", "frame", "provider.event", "decode.error", "stream.stall",
         "stream.end", "stream.abort", "stream.error"}


def documented_types() -> set[str]:
    doc = (Path(__file__).parents[2] / "docs" / "events.md").read_text()
    types = doc.split("\n## Types\n", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^### ([a-z_]+(?:\.[a-z_]+)?)\b", types, re.M)) - {"WebSocket"}


def test_the_page_names_every_stream_event_type_and_has_a_fallback():
    assert documented_types() - SHOWN == {"gap", "cutoff", "restart"}
    for kind in SHOWN:
        assert f'"{kind}"' in SCRIPT, kind
    assert "default: {" in SCRIPT  # a type it does not know still gets a line


def test_the_page_never_parses_event_data_as_html():
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
                 "setAttribute(\"on", "DOMParser", "createContextualFragment", ".href", ".src"):
        assert sink not in SCRIPT, sink


def test_the_page_is_served_under_its_content_security_policy(tmp_path):
    async def scenario() -> bytes:
        server = ApiHTTPServer(api.make_app(Hub(), max_lag=1000, stall_seconds=5))
        server.add_socket(bind_private_unix_socket(tmp_path / "api.sock"))
        try:
            reader, writer = await asyncio.open_unix_connection(str(tmp_path / "api.sock"))
            writer.write(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            await writer.drain()
            response = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            return response
        finally:
            server.stop()

    response = asyncio.run(scenario())
    head, body = response.split(b"\r\n\r\n", 1)
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in head.decode().split("\r\n")[1:])}
    assert head.startswith(b"HTTP/1.1 200") and headers["content-security-policy"] == CSP
    assert body.decode() == PAGE

"""HTTP/2 end to end: an h2 client through streamtap to an h2 upstream, captured exactly
as HTTP/1.1 is."""

from __future__ import annotations

import ssl
import subprocess

import httpx
import pytest

from .support import fixtures
from .support.fixtures import encode
from .support.pki import make_pki
from .support.proc import StreamtapProcess
from .support.subscriber import EventLog, text_of
from .support.upstream import Reply, Request
from .support.upstream_h2 import H2Upstream

pytestmark = pytest.mark.e2e

FX = fixtures.openai_chat_tools()
WIRE = encode(FX.body, "zstd")


def reply(request: Request) -> Reply:
    return Reply(headers=[("content-type", "text/event-stream"), ("content-encoding", "zstd")],
                 chunks=[WIRE[i:i + 6] for i in range(0, len(WIRE), 6)], delay=0.001)


@pytest.fixture(scope="module")
def h2world(tmp_path_factory):
    work = tmp_path_factory.mktemp("h2")
    pki = make_pki(work / "pki", ["api.openai.com"])
    with H2Upstream(pki, reply) as upstream:
        proc = StreamtapProcess(
            ["--certs", str(work / "certs"), "--api-socket", str(work / "api.sock"),
             "--set", f"ssl_verify_upstream_trusted_ca={pki.ca_cert}",
             "--set", f"streamtap_connect_to=api.openai.com:443=127.0.0.1:{upstream.port}"],
            cwd=work,
        )
        try:
            yield {"proc": proc, "upstream": upstream, "log": EventLog(str(work / "api.sock"), since=0),
                   "ca": work / "certs" / "mitmproxy-ca-cert.pem"}
        finally:
            proc.stop()


def test_httpx_http2_client_and_upstream(h2world):
    ctx = ssl.create_default_context(cafile=str(h2world["ca"]))
    with httpx.Client(proxy=h2world["proc"].proxy_url, verify=ctx, http2=True) as http:
        with http.stream("POST", "https://api.openai.com/v1/chat/completions", json={},
                         headers={"x-streamtap-tag": "h2-httpx", "accept-encoding": "identity"}) as r:
            assert r.http_version == "HTTP/2"
            raw = b"".join(r.iter_raw())
    assert raw == WIRE
    assert h2world["upstream"].http_versions[-1] == "2"
    events = h2world["log"].stream_of("h2-httpx")
    assert events[0]["request"]["http_version"] == "HTTP/2.0"
    assert text_of(events) == FX.text and events[-1]["type"] == "stream.end"
    calls = [{k: e[k] for k in ("id", "name", "arguments", "index")} for e in events if e["type"] == "tool_call"]
    assert calls == FX.tool_calls


def test_curl_http2(h2world):
    result = subprocess.run(
        ["curl", "-sS", "--http2", "--proxy", h2world["proc"].proxy_url, "--cacert", str(h2world["ca"]),
         "-H", "x-streamtap-tag: h2-curl", "-w", "%{http_version}", "-o", "-",
         "https://api.openai.com/v1/chat/completions", "-d", "{}"],
        capture_output=True, timeout=30,
    )
    assert result.stdout == WIRE + b"2", result.stderr
    events = h2world["log"].stream_of("h2-curl")
    assert text_of(events) == FX.text

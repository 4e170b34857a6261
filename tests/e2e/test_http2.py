"""HTTP/2 end to end: an h2 client through streamtap to an h2 upstream, captured exactly
as HTTP/1.1 is."""

from __future__ import annotations

import ssl
import subprocess

import httpx
import pytest

from tests.support import fixtures
from tests.support.fixtures import encode
from tests.support.pki import make_pki
from tests.support.proc import StreamtapProcess
from tests.support.subscriber import EventLog, text_of
from tests.support.upstream import Reply, Request
from tests.support.upstream_h2 import H2Upstream

pytestmark = pytest.mark.e2e

FX = fixtures.openai_chat_tools()
WIRE = encode(FX.body, "zstd")


ALT = fixtures.openai_chat_text(parts=["Ein ", "anderer ", "Text — ", "ganz ", "anders ✓"])
ALT_WIRE = encode(ALT.body, "zstd")


def reply(request: Request) -> Reply:
    if request.headers.get("x-test-scenario") == "alt":
        return Reply(headers=[("content-type", "text/event-stream"), ("content-encoding", "zstd")],
                     chunks=[ALT_WIRE[i:i + 5] for i in range(0, len(ALT_WIRE), 5)], delay=0.003)
    scenario = request.headers.get("x-test-scenario")
    delay = 0.02 if scenario == "slow" else 0.003 if scenario == "fast-but-paced" else 0.001
    return Reply(headers=[("content-type", "text/event-stream"), ("content-encoding", "zstd")],
                 chunks=[WIRE[i:i + 6] for i in range(0, len(WIRE), 6)], delay=delay)


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


class RawH2:
    """A bare HTTP/2 client (the h2 library) through the proxy, to send RST_STREAM."""

    def __init__(self, h2world) -> None:
        import socket

        import h2.config
        import h2.connection

        raw = socket.create_connection(("127.0.0.1", h2world["proc"].proxy_port))
        raw.sendall(b"CONNECT api.openai.com:443 HTTP/1.1\r\nHost: api.openai.com:443\r\n\r\n")
        assert raw.recv(4096).startswith(b"HTTP/1.1 200")
        ctx = ssl.create_default_context(cafile=str(h2world["ca"]))
        ctx.set_alpn_protocols(["h2"])
        self.sock = ctx.wrap_socket(raw, server_hostname="api.openai.com")
        assert self.sock.selected_alpn_protocol() == "h2"
        self.sock.settimeout(10)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        self.flush()

    def flush(self) -> None:
        self.sock.sendall(self.conn.data_to_send())

    def post(self, tag: str, scenario: str) -> int:
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, [(":method", "POST"), (":scheme", "https"), (":authority", "api.openai.com"),
                                     (":path", "/v1/chat/completions"), ("x-streamtap-tag", tag),
                                     ("x-test-scenario", scenario)], end_stream=True)
        self.flush()
        return sid

    def read(self, sid: int, until_bytes: int | None = None) -> bytes:
        import h2.events

        body = b""
        while True:
            for event in self.conn.receive_data(self.sock.recv(65536)):
                if isinstance(event, h2.events.DataReceived) and event.stream_id == sid:
                    body += event.data
                    self.conn.acknowledge_received_data(event.flow_controlled_length, sid)
                if isinstance(event, h2.events.StreamEnded) and event.stream_id == sid:
                    self.flush()
                    return body
            self.flush()
            if until_bytes is not None and len(body) >= until_bytes:
                return body


def test_http2_rst_stream_is_abort_by_client_and_the_next_stream_is_clean(h2world):
    import h2.errors

    client = RawH2(h2world)
    for i in range(5):
        sid = client.post(f"h2-cancel-{i}", "slow")
        client.read(sid, until_bytes=50)
        client.conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)  # the user pressed Stop
        client.flush()
        sid = client.post(f"h2-after-{i}", "fast")  # same connection, next stream
        assert client.read(sid) == WIRE
        cancelled = h2world["log"].stream_of(f"h2-cancel-{i}")
        assert cancelled[-1]["type"] == "stream.abort" and cancelled[-1]["by"] == "client", cancelled[-1]
        assert FX.text.startswith(text_of(cancelled))
        after = h2world["log"].stream_of(f"h2-after-{i}")
        assert text_of(after) == FX.text and after[-1]["type"] == "stream.end"


def test_concurrent_streams_on_one_http2_connection_stay_apart(h2world):
    """Two answers interleaved on one connection: each stream holds only its own text."""
    client = RawH2(h2world)
    a = client.post("h2-mux-a", "fast-but-paced")
    b = client.post("h2-mux-b", "alt")
    import h2.events

    bodies = {a: b"", b: b""}
    ended: set[int] = set()
    while ended != {a, b}:
        for event in client.conn.receive_data(client.sock.recv(65536)):
            if isinstance(event, h2.events.DataReceived):
                bodies[event.stream_id] += event.data
                client.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                ended.add(event.stream_id)
        client.flush()
    assert bodies == {a: WIRE, b: ALT_WIRE}
    first, second = h2world["log"].stream_of("h2-mux-a"), h2world["log"].stream_of("h2-mux-b")
    assert text_of(first) == FX.text and text_of(second) == ALT.text
    assert first[0]["stream"] != second[0]["stream"]

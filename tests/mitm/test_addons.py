"""The addons under mitmproxy's own test harness: hooks called as mitmproxy calls them."""

from __future__ import annotations

import pytest
from mitmproxy import exceptions
from mitmproxy.flow import Error
from mitmproxy.proxy import server_hooks
from mitmproxy.test import taddons, tflow

from proxy_core.hub.hub import Hub
from proxy_core.mitm import ApiServer, Captures, ConfigFile, Routing, StreamCapture, UpstreamProxies
from tests.support import fixtures

CHAT = fixtures.openai_chat_text()


@pytest.fixture
def setup():
    hub = Hub()
    routing, capture, api = Routing(), StreamCapture(hub), ApiServer(hub)
    with taddons.context(ConfigFile(), routing, UpstreamProxies(), capture, Captures(hub), api) as tctx:
        yield hub, routing, capture, tctx


def routed_flow(routing, host="api.openai.com", path="/v1/chat/completions", headers=None):
    f = tflow.tflow(resp=True)
    f.request.host = host
    f.request.headers["host"] = host
    f.request.path = path
    for k, v in (headers or {}).items():
        f.request.headers[k] = v
    f.response.headers["content-type"] = "text/event-stream"
    routing.requestheaders(f)
    return f


def events(hub):
    return [e.to_dict() for e in hub.read(0, 10_000)[1]]


def test_routed_response_is_streamed_through_the_tap(setup):
    hub, routing, capture, _ = setup
    f = routed_flow(routing, headers={"authorization": "Bearer sk-secret", "x-streamtap-tag": "job-7"})
    capture.responseheaders(f)
    assert callable(f.response.stream)
    body = CHAT.body
    sent = [f.response.stream(body[i : i + 5]) for i in range(0, len(body), 5)]
    assert b"".join(sent) == body  # every chunk passes unchanged
    assert f.response.stream(b"") == b""
    capture.response(f)  # mitmproxy calls it after the stream: no second terminal event
    evs = events(hub)
    assert [e["seq"] for e in evs] == list(range(len(evs)))
    assert evs[0]["type"] == "stream.start" and evs[-1]["type"] == "stream.end"
    assert [e["type"] for e in evs].count("stream.end") == 1
    assert "".join(e["text"] for e in evs if e["type"] == "text.delta") == CHAT.text
    request = evs[0]["request"]
    assert request["tag"] == "job-7" and request["provider"] == "openai"
    assert request["headers"]["authorization"] == "[redacted]"
    assert "x-streamtap-tag" not in f.request.headers  # removed before going upstream
    assert evs[-1]["totals"]["events"] == len(evs)


def test_unrouted_flow_is_left_alone(setup):
    hub, routing, capture, _ = setup
    f = routed_flow(routing, host="example.com", path="/")
    capture.responseheaders(f)
    assert f.response.stream is False
    f2 = routed_flow(routing, path="/v1/models")  # routed host, path not routed
    capture.responseheaders(f2)
    assert f2.response.stream is False and hub.last_offset == 0


def test_error_hook_aborts_with_the_text_so_far(setup):
    hub, routing, capture, _ = setup
    f = routed_flow(routing)
    capture.responseheaders(f)
    half = CHAT.body[: len(CHAT.body) // 2]
    f.response.stream(half)
    f.error = Error("Client disconnected.")
    capture.error(f)
    capture.error(f)  # twice: still one terminal event
    evs = events(hub)
    assert evs[-1]["type"] == "stream.abort" and evs[-1]["by"] == "client"
    assert [e["type"] for e in evs].count("stream.abort") == 1
    assert hub.streams[evs[0]["stream"]].message()["text"]
    # The next request is a new stream holding only its own events.
    g = routed_flow(routing)
    capture.responseheaders(g)
    g.response.stream(CHAT.body)
    g.response.stream(b"")
    second = [e for e in events(hub) if e["stream"] != evs[0]["stream"]]
    assert "".join(e["text"] for e in second if e["type"] == "text.delta") == CHAT.text


def test_upstream_failure_is_abort_by_upstream(setup):
    hub, routing, capture, _ = setup
    f = routed_flow(routing)
    capture.responseheaders(f)
    f.error = Error("peer closed connection without sending complete message body: incomplete chunked read")
    capture.error(f)
    assert events(hub)[-1]["by"] == "upstream"


def test_error_status_ends_with_stream_error(setup):
    hub, routing, capture, _ = setup
    f = routed_flow(routing)
    f.response.status_code = 500
    f.response.headers["content-type"] = "application/json"
    capture.responseheaders(f)
    f.response.stream(b'{"error": {"message": "The server had an error"}}')
    f.response.stream(b"")
    last = events(hub)[-1]
    assert last["type"] == "stream.error" and last["status"] == 500
    assert last["message"] == "The server had an error"


def test_empty_body_still_ends_the_stream(setup):
    hub, routing, capture, _ = setup
    f = routed_flow(routing)
    capture.responseheaders(f)
    capture.response(f)
    assert [e["type"] for e in events(hub)] == ["stream.start", "stream.end"]


def test_a_tap_that_fails_inside_never_raises(setup, monkeypatch):
    hub, routing, capture, _ = setup
    f = routed_flow(routing)
    capture.responseheaders(f)
    tap = f.response.stream.tap  # the FlowTap mitmproxy streams the body through
    monkeypatch.setattr(tap._framing, "feed", lambda data: 1 / 0)
    assert f.response.stream(b"data: x\n\n") == b"data: x\n\n"
    assert f.response.stream(b"more") == b"more"
    f.response.stream(b"")
    types = [e["type"] for e in events(hub)]
    assert types == ["stream.start", "decode.error", "stream.end"]


def test_done_aborts_active_streams(setup):
    hub, routing, capture, _ = setup
    f = routed_flow(routing)
    capture.responseheaders(f)
    capture.done()
    assert events(hub)[-1]["type"] == "stream.abort" and events(hub)[-1]["by"] == "proxy"


def test_connect_to_redirects_and_keeps_the_tls_name(setup):
    _, routing, _, tctx = setup
    tctx.configure(routing, streamtap_connect_to=["api.openai.com:443=127.0.0.1:8443"])
    server = tflow.tserver_conn()
    server.address = ("api.openai.com", 443)
    server.sni = None
    routing.server_connect(server_hooks.ServerConnectionHookData(server=server, client=tflow.tclient_conn()))
    assert server.address == ("127.0.0.1", 8443) and server.sni == "api.openai.com"


def test_routes_option(setup):
    _, routing, _, tctx = setup
    tctx.configure(routing, streamtap_routes=["*.example.com:^/v1=sse", "api.example.org=ndjson"])
    assert routing.table.intercepts("a.example.com") and not routing.table.intercepts("example.net")
    assert routing.table.match("a.example.com", "/v1/x").provider == "sse"
    assert routing.table.match("a.example.com", "/v2/x") is None


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("streamtap_routes", ["api.x.com=nope"], "unknown provider 'nope'"),
        ("streamtap_routes", ["api.x.com:([=sse"], "invalid regular expression"),
        ("streamtap_connect_to", ["api.x.com=127.0.0.1:1"], "is not HOST:PORT"),
        ("streamtap_connect_to", ["api.x.com:443"], "expected HOST:PORT=ADDRESS:PORT"),
        ("streamtap_api_listen", "0.0.0.0:9000", "not loopback"),
        ("streamtap_buffer_events", 0, "at least 1"),
        ("streamtap_max_message_chars", -1, "0 or more"),
        ("streamtap_subscriber_queue", 0, "at least 1"),
        ("streamtap_reader_max_lag", 0, "at least 1"),
        ("streamtap_max_event_bytes", 10, "at least 1024"),
        ("streamtap_idle_timeout", "soon", "a number of seconds"),
        ("streamtap_decode_window", "soon", "expected a number of seconds"),
        ("streamtap_decode_window", "1", "must be between 0 and 0.1 seconds"),
        ("streamtap_idle_timeout", "-1", "a number of seconds"),
        ("streamtap_capture_max_age", 0, "at least 1"),
        ("streamtap_capture_flush_ms", -1, "0 or more"),
        ("streamtap_upstream_proxies", ["socks5://127.0.0.1:1080"], "not an http:// or https:// proxy URL"),
        ("streamtap_via", ["api.x.com"], "expected HOST_GLOB=URL"),
        ("streamtap_via", ["api.x.com=ftp://p:1"], "not an http:// or https:// proxy URL"),
    ],
)
def test_bad_options_are_refused_naming_the_option(setup, option, value, message):
    _, routing, _, tctx = setup
    with pytest.raises(exceptions.OptionsError, match=f"{option}: .*{message}"):
        tctx.options.update(**{option: value})


def test_config_file_option_applies_the_file(setup, tmp_path):
    _, routing, _, tctx = setup
    cfg = tmp_path / "c.yaml"
    cfg.write_text("routes:\n  - {host: llm.local, provider: sse}\napi: {socket: ''}\n")
    tctx.options.update(streamtap_config=str(cfg))
    assert routing.table.intercepts("llm.local") and not routing.table.intercepts("api.openai.com")
    assert tctx.options.streamtap_api_socket == ""
    cfg.write_text("routes: 5\n")
    with pytest.raises(exceptions.OptionsError, match="routes: must be a list"):
        tctx.options.update(streamtap_config=str(cfg) + "")


def test_a_burst_is_decoded_in_one_batch_and_nothing_waits_past_the_end():
    """On the proxy's loop, a chunk within the window of the last decoding run waits to
    be decoded with the next ones; the timer, the end of the body or an abort flush it."""
    import asyncio

    from proxy_core.hub.taps import FlowTap
    from proxy_core.pipeline.coalesce import Coalescer
    from proxy_core.pipeline.tap import StreamTap

    def delta(text: str) -> bytes:
        return b'data: {"choices":[{"index":0,"delta":{"content":"%s"}}]}\n\n' % text.encode()

    def texts(hub):
        return [e.to_dict()["text"] for e in hub.read(0, 100)[1] if e.type == "text.delta"]

    async def scenario() -> None:
        hub = Hub()
        coalescer = Coalescer(hub.deliver, window=0.05)
        record = hub.open_stream({"host": "h", "provider": "openai"}, {})
        tap = FlowTap(hub, record, StreamTap("openai", 200, "text/event-stream"), coalescer)
        assert tap(delta("a")) == delta("a")  # the first chunk: decoded at once
        assert texts(hub) == ["a"]
        for t in "bcd":
            assert tap(delta(t)) == delta(t)  # forwarded unchanged, decoded soon
        assert texts(hub) == ["a"]
        assert await hub.wait(hub.last_offset, timeout=5)  # the timer's batch
        assert texts(hub) == ["a", "b", "c", "d"]
        tap(delta("e"))
        tap(b"")  # the end decodes what waits, before stream.end
        assert texts(hub) == ["a", "b", "c", "d", "e"]
        assert hub.read(0, 100)[1][-1].type == "stream.end"

        aborted = hub.open_stream({"host": "h", "provider": "openai"}, {})
        tap = FlowTap(hub, aborted, StreamTap("openai", 200, "text/event-stream"), coalescer)
        tap(delta("x"))
        tap(delta("y"))
        tap.abort("client", "client disconnected")  # y arrived whole: it counts
        kinds = [(e.type, e.to_dict().get("text")) for e in hub.read(0, 100)[1] if e.stream == aborted.id]
        assert kinds[1:] == [("text.delta", "x"), ("text.delta", "y"), ("stream.abort", None)]

    asyncio.run(scenario())


def test_one_stream_s_chunk_after_the_window_decodes_every_stream_waiting():
    """Chunks of all streams wait together: the next chunk after the window, whichever
    stream it belongs to, decodes them all, and the readers get them in one go."""
    import asyncio
    import time

    from proxy_core.pipeline.coalesce import Coalescer

    decoded: list[str] = []
    deliveries: list[list[str]] = []

    class Tap:
        def __init__(self, name: str) -> None:
            self.name = name

        def decode_pending(self) -> None:
            decoded.append(self.name)

    async def scenario() -> None:
        coalescer = Coalescer(lambda: deliveries.append(list(decoded)), window=1.0)
        a, b = Tap("a"), Tap("b")
        now = time.perf_counter() + 10
        coalescer.add(a, now)  # long after the last run: decoded at once
        assert deliveries == [["a"]]
        coalescer.add(a, now + 0.1)  # within the window: both wait
        coalescer.add(b, now + 0.2)
        assert decoded == ["a"]
        coalescer.add(b, now + 1.5)  # past the window: everything waiting, one delivery
        assert decoded == ["a", "a", "b"] and deliveries == [["a"], ["a", "a", "b"]]
        coalescer.add(a, now + 1.6)
        coalescer.discard(a)  # its body ended and it decoded itself
        coalescer.run()
        assert decoded == ["a", "a", "b"] and len(deliveries) == 2

    asyncio.run(scenario())


def test_decode_window_option_sets_the_coalescer(setup):
    hub, routing, capture, tctx = setup
    assert capture.coalescer.window == 0.0005
    tctx.configure(capture, streamtap_decode_window="0.002")
    assert capture.coalescer.window == 0.002
    tctx.configure(capture, streamtap_decode_window="0")  # every chunk decoded at once
    assert capture.coalescer.window == 0


def test_the_old_name_of_reader_max_lag_still_works(setup):
    from proxy_core.mitm.api_server import _reader_max_lag

    _, _, _, tctx = setup
    assert _reader_max_lag() == 10_000
    tctx.options.update(streamtap_subscriber_queue=77)
    assert _reader_max_lag() == 77
    tctx.options.update(streamtap_reader_max_lag=55)  # the new name wins
    assert _reader_max_lag() == 55

"""WebSocketCapture under mitmproxy's test harness: hooks called as mitmproxy calls them."""

from __future__ import annotations

import pytest
from mitmproxy.flow import Error
from mitmproxy.test import taddons, tflow
from mitmproxy.websocket import Opcode, WebSocketMessage  # mitmproxy's own (wsproto's) opcodes

from proxy_core.hub.hub import Hub
from proxy_core.mitm import Routing, StreamCapture, WebSocketCapture, default_addons
from tests.support import websocket as ws
from tests.support.websocket import dumps


@pytest.fixture
def setup():
    hub = Hub()
    routing, capture, wscap = Routing(), StreamCapture(hub), WebSocketCapture(hub)
    with taddons.context(routing, capture, wscap) as tctx:
        yield hub, routing, capture, wscap, tctx


def ws_flow(routing, host="api.openai.com", path="/v1/responses", status=101):
    f = tflow.twebsocketflow(messages=False)
    f.websocket.messages = []
    f.request.host = host
    f.request.headers["host"] = host
    f.request.path = path
    f.request.headers["authorization"] = "Bearer sk-secret"
    f.request.headers["openai-beta"] = "responses_websockets=2026-02-06"
    f.response.status_code = status
    routing.requestheaders(f)
    return f


def send(wscap, f, from_client, obj):
    content = obj if isinstance(obj, bytes) else dumps(obj)
    f.websocket.messages.append(WebSocketMessage(Opcode.TEXT, from_client, content))
    wscap.websocket_message(f)


def events(hub):
    return [e.to_dict() for e in hub.read(0, 100_000)[1]]


def by_stream(hub):
    out: dict[str, list] = {}
    for e in events(hub):
        out.setdefault(e["stream"], []).append(e)
    return out


def test_default_addons_include_websocket_capture():
    assert any(isinstance(a, WebSocketCapture) for a in default_addons(Hub()))


def test_one_stream_per_answer_and_never_the_handshake(setup):
    hub, routing, capture, wscap, _ = setup
    f = ws_flow(routing)
    capture.responseheaders(f)  # the 101: not a stream
    capture.response(f)
    assert events(hub) == []
    wscap.websocket_start(f)
    for n in range(2):
        send(wscap, f, True, ws.response_create(previous=f"resp_{n - 1}" if n else None))
        for e in ws.text_answer([f"answer {n}", " ✓"], response_id=f"resp_{n}"):
            send(wscap, f, False, e)
            assert len(f.websocket.messages) == 1  # bounded: only the newest is kept
    f.websocket.close_code, f.websocket.closed_by_client = 1000, True
    wscap.websocket_end(f)
    streams = list(by_stream(hub).values())
    assert len(streams) == 2
    for n, evs in enumerate(streams):
        assert [e["seq"] for e in evs] == list(range(len(evs)))
        start, end = evs[0], evs[-1]
        assert start["type"] == "stream.start" and start["transport"] == "websocket"
        assert start["connection"] == f.id
        assert start["request"]["model"] == "gpt-5.2-codex" and start["request"]["answer"] == n
        assert start["request"]["headers"]["authorization"] == "[redacted]"
        assert "secret prompt" not in repr(start)
        assert start["response"]["status"] == 101
        assert "".join(e["text"] for e in evs if e["type"] == "text.delta") == f"answer {n} ✓"
        assert end["type"] == "stream.end" and end["totals"]["events"] == len(evs)
    assert streams[1][0]["request"]["previous_response_id"] == "resp_0"
    record = hub.streams[streams[0][0]["stream"]]
    assert record.summary()["transport"] == "websocket" and record.message()["text"] == "answer 0 ✓"


def test_http_streams_say_their_transport(setup):
    hub, routing, capture, _, _ = setup
    f = tflow.tflow(resp=True)
    f.request.method, f.request.host, f.request.path = "POST", "api.openai.com", "/v1/responses"
    routing.requestheaders(f)
    capture.responseheaders(f)
    start = events(hub)[0]
    assert start["transport"] == "http" and start["connection"] is None


def test_a_close_mid_answer_aborts_it_naming_the_side(setup):
    hub, routing, _, wscap, _ = setup
    for by_client, code, side in [(True, 1000, "client"), (False, 1006, "upstream")]:
        f = ws_flow(routing)
        wscap.websocket_start(f)
        send(wscap, f, True, ws.response_create())
        send(wscap, f, False, ws.text_answer(["half"])[0])
        send(wscap, f, False, ws.text_answer(["half"])[2])
        f.websocket.close_code, f.websocket.closed_by_client = code, by_client
        wscap.websocket_end(f)
        end = events(hub)[-1]
        assert end["type"] == "stream.abort" and end["by"] == side and f"code {code}" in end["message"]


def test_warmup_is_marked_in_the_request(setup):
    hub, routing, _, wscap, _ = setup
    f = ws_flow(routing)
    wscap.websocket_start(f)
    send(wscap, f, True, ws.response_create(generate=False))
    for e in ws.warmup_answer():
        send(wscap, f, False, e)
    start = events(hub)[0]
    assert start["request"]["warmup"] is True and events(hub)[-1]["type"] == "stream.end"


def test_unrouted_websocket_paths_are_relayed_untouched(setup):
    hub, routing, capture, wscap, _ = setup
    f = ws_flow(routing, host="api.anthropic.com", path="/v1/voice/stream")
    capture.responseheaders(f)
    wscap.websocket_start(f)
    send(wscap, f, False, {"type": "response.output_text.delta", "delta": "x"})
    wscap.websocket_end(f)
    assert events(hub) == []
    send(wscap, f, False, {"type": "response.output_text.delta", "delta": "y"})
    assert len(f.websocket.messages) == 1  # not decoded, and not kept either


def test_a_refused_upgrade_is_stream_error_even_when_the_client_hangs_up(setup):
    hub, routing, capture, _, _ = setup
    f = ws_flow(routing, status=403)
    f.response.headers["content-type"] = "application/json"
    capture.responseheaders(f)
    f.response.stream(b'{"error": {"message": "forbidden"}')  # the body cut short ...
    f.error = Error("Client disconnected.")  # ... and the client gone (as Codex does)
    capture.error(f)
    evs = events(hub)
    assert [e["type"] for e in evs] == ["stream.start", "stream.error"]
    assert evs[-1]["status"] == 403


def test_ws_json_records_websockets_only(setup):
    hub, routing, capture, wscap, tctx = setup
    tctx.configure(routing, streamtap_routes=["example.com:^/ws=ws-json"])
    plain = tflow.tflow(resp=True)
    plain.request.method, plain.request.host, plain.request.path = "POST", "example.com", "/ws/poll"
    routing.requestheaders(plain)
    capture.responseheaders(plain)
    assert events(hub) == []  # an HTTP request on a ws-json route is not recorded
    f = ws_flow(routing, host="example.com", path="/ws")
    wscap.websocket_start(f)
    send(wscap, f, True, b'{"subscribe": "ticks"}')
    f.websocket.messages.append(WebSocketMessage(Opcode.BINARY, False, b"\x00" * 10))
    wscap.websocket_message(f)
    f.websocket.close_code, f.websocket.closed_by_client = 1000, False
    wscap.websocket_end(f)
    evs = events(hub)
    assert [e["type"] for e in evs] == ["stream.start", "frame", "stream.end"]
    assert evs[1]["data"] == {"subscribe": "ticks"} and evs[1]["event"] == "client"
    assert evs[2]["totals"]["binary_messages"] == 1


def test_realtime_route_and_shutdown(setup):
    hub, routing, _, wscap, _ = setup
    f = ws_flow(routing, path="/v1/realtime?model=gpt-realtime")
    wscap.websocket_start(f)
    for e in ws.realtime_answer("r1")[:3]:
        send(wscap, f, False, e)
    wscap.done()
    evs = events(hub)
    assert evs[0]["request"]["provider"] == "openai-realtime" and evs[0]["request"]["model"] == "gpt-realtime"
    assert "".join(e["text"] for e in evs if e["type"] == "text.delta") == "Hello "
    assert evs[-1]["type"] == "stream.abort" and evs[-1]["by"] == "proxy"


def test_codex_with_chatgpt_login_is_routed(setup):
    hub, routing, _, wscap, _ = setup
    f = ws_flow(routing, host="chatgpt.com", path="/backend-api/codex/responses")
    wscap.websocket_start(f)
    send(wscap, f, True, ws.response_create())
    for e in ws.text_answer(["hi"]):
        send(wscap, f, False, e)
    assert [e["type"] for e in events(hub)][-1] == "stream.end"
    other = ws_flow(routing, host="chatgpt.com", path="/backend-api/codex/models")
    assert other.metadata.get("streamtap.provider") != "openai"


def test_replay_of_a_saved_websocket_flow(tmp_path):
    from mitmproxy import io

    from proxy_core.config.routes import RouteTable, parse_route
    from proxy_core.mitm.replay import replay_flows
    from proxy_core.mitm.routing import default_route_specs

    f = tflow.twebsocketflow(messages=False)
    f.request.host, f.request.path = "api.openai.com", "/v1/responses"
    f.websocket.messages = [WebSocketMessage(Opcode.TEXT, True, dumps(ws.response_create()))]
    f.websocket.messages += [WebSocketMessage(Opcode.TEXT, False, dumps(e)) for e in ws.text_answer(["saved ", "✓"])]
    f.websocket.close_code = 1000
    path = tmp_path / "ws.mitm"
    with path.open("wb") as out:
        io.FlowWriter(out).add(f)
    routes = RouteTable([parse_route(s) for s in default_route_specs()])
    evs = list(replay_flows(path, routes))
    assert [e["type"] for e in evs][0] == "stream.start" and evs[0]["transport"] == "websocket"
    assert "".join(e["text"] for e in evs if e["type"] == "text.delta") == "saved ✓"
    assert evs[-1]["type"] == "stream.end"

"""The decoder process's two ends, joined without processes: what the proxy's forwarders
write is read back by DecoderHost into a real hub, as the child would."""

from __future__ import annotations

import asyncio

from proxy_core.config import defaults
from proxy_core.hub.hub import Hub
from proxy_core.mitm import decoder_process
from proxy_core.mitm.api_server import ApiServer
from proxy_core.mitm.decoder_host import DecoderHost
from proxy_core.mitm.decoder_process import DecoderProcess, wanted
from proxy_core.mitm.stream_capture import StreamCapture
from proxy_core.mitm.websocket_capture import WebSocketCapture
from proxy_core.pipeline.channel import ChannelReader
from tests.support import websocket as ws
from tests.support.websocket import dumps

REQUEST = {"method": "POST", "host": "api.openai.com", "path": "/v1/chat/completions", "provider": "openai",
           "tag": None, "headers": {}}
RESPONSE = {"status": 200, "headers": {}, "content_type": "text/event-stream", "content_encoding": None}


class Wire:
    """The proxy's transport: what it writes, read at once by the host."""

    def __init__(self, host: DecoderHost) -> None:
        self.host = host
        self.reader = ChannelReader()
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        self.host.frames(self.reader.feed(data))

    def is_closing(self) -> bool:
        return False


def joined() -> tuple[DecoderProcess, Hub]:
    hub = Hub()
    host = DecoderHost(hub, StreamCapture(hub), WebSocketCapture(hub), ApiServer(hub), None, ChannelReader(), [])  # type: ignore[arg-type]
    proxy = DecoderProcess()
    proxy.active, proxy.window = True, 0  # every send written at once: no loop needed
    proxy._transport = Wire(host)  # type: ignore[assignment]
    return proxy, hub


def sse(*texts: str) -> bytes:
    events = [b'data: {"choices":[{"index":0,"delta":{"content":%s}}]}\n\n' % dumps(t) for t in texts]
    return b"".join(events) + b"data: [DONE]\n\n"


def events(hub: Hub) -> list[dict]:
    return [e.to_dict() for e in hub.read(0, 100_000)[1]]


def test_auto_decodes_in_a_process_only_with_the_cores_for_it(monkeypatch):
    monkeypatch.setattr(decoder_process, "usable_cpus", lambda: defaults.DECODER_PROCESS_MIN_CPUS - 1)
    assert not wanted("auto") and wanted("on") and not wanted("off")
    monkeypatch.setattr(decoder_process, "usable_cpus", lambda: defaults.DECODER_PROCESS_MIN_CPUS)
    assert wanted("auto")


def test_a_containers_cpu_quota_counts(tmp_path):
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("150000 100000\n")  # docker run --cpus=1.5
    assert decoder_process.usable_cpus(cpu_max) == 1
    cpu_max.write_text("max 100000\n")
    assert decoder_process.usable_cpus(cpu_max) == decoder_process.usable_cpus(tmp_path / "none")


def test_a_stream_forwarded_in_awkward_chunks_is_decoded_there_exactly():
    proxy, hub = joined()
    body = sse("Hel", "lo ✓", " wörld")
    forward = proxy.http.open("flow-1", REQUEST, RESPONSE, "openai", defaults.MAX_EVENT_BYTES)
    for i in range(0, len(body), 3):
        assert forward(body[i : i + 3]) == body[i : i + 3]  # the client's bytes, unchanged
    assert forward(b"") == b""
    proxy.http.end("flow-1")  # the response hook after the final chunk: nothing more is sent
    got = events(hub)
    assert {e["stream"] for e in got} == {forward.stream_id}  # the id the proxy gave the flow
    assert [e["seq"] for e in got] == list(range(len(got)))
    assert "".join(e["text"] for e in got if e["type"] == "text.delta") == "Hello ✓ wörld"
    assert got[0]["type"] == "stream.start" and got[-1]["type"] == "stream.end"
    assert got[-1]["totals"]["wire_bytes"] == len(body)


def test_an_abort_and_an_unanswered_request_reach_the_hub():
    proxy, hub = joined()
    forward = proxy.http.open("flow-1", REQUEST, RESPONSE, "openai", defaults.MAX_EVENT_BYTES)
    forward(sse("whole")[:40])
    assert proxy.http.abort("flow-1", "client", "client disconnected")
    assert not proxy.http.abort("flow-1", "client", "again")  # it has no tap any more
    stream_id = proxy.http.no_answer(REQUEST, "connection refused")
    got = events(hub)
    assert got[-3]["type"] == "stream.abort" and got[-3]["by"] == "client"
    assert got[-1]["stream"] == stream_id and got[-1]["type"] == "stream.error" and got[-1]["status"] == 502


def test_chunks_not_sent_while_the_decoder_is_behind_are_said_and_never_decoded_as_text():
    proxy, hub = joined()
    first, lost, after = sse("kept")[:-14], b'data: {"choices":[{"delta":{"content":"lost"}}]}\n\n', b"data: [DONE]\n\n"
    forward = proxy.http.open("flow-1", REQUEST, RESPONSE, "openai", defaults.MAX_EVENT_BYTES)
    forward(first)
    proxy.overloaded = True  # what the transport's pause_writing sets
    assert forward(lost) == lost  # the client still gets it
    proxy.overloaded = False
    forward(after)
    forward(b"")
    got = events(hub)
    errors = [e for e in got if e["type"] == "decode.error"]
    assert len(errors) == 1 and f"{len(lost)} bytes of this body were not decoded" in errors[0]["message"]
    assert "".join(e["text"] for e in got if e["type"] == "text.delta") == "kept"
    assert got[-1]["type"] == "stream.end" and [e["seq"] for e in got] == list(range(len(got)))


def test_websocket_answers_are_streams_there():
    proxy, hub = joined()
    request = {**REQUEST, "method": "GET", "path": "/v1/responses"}
    response = {**RESPONSE, "status": 101, "content_type": None}
    proxy.websockets.start("ws-flow", "openai", request, response, "gpt-5.2-codex", defaults.MAX_EVENT_BYTES,
                           "ws-flow")
    assert "ws-flow" in proxy.websockets
    proxy.websockets.message("ws-flow", True, dumps(ws.response_create()), True)
    for message in ws.text_answer(["one ", "two"], response_id="resp_1"):
        proxy.websockets.message("ws-flow", False, dumps(message), True)
    proxy.websockets.end("ws-flow", True, 1000, "")
    got = events(hub)
    assert got[0]["type"] == "stream.start" and got[0]["transport"] == "websocket"
    assert got[0]["connection"] == "ws-flow" and got[0]["request"]["answer"] == 0
    assert "".join(e["text"] for e in got if e["type"] == "text.delta") == "one two"
    assert got[-1]["type"] == "stream.end"


def test_websocket_messages_not_sent_while_behind_end_the_answer_they_belonged_to():
    proxy, hub = joined()
    request = {**REQUEST, "method": "GET", "path": "/v1/responses"}
    response = {**RESPONSE, "status": 101, "content_type": None}
    proxy.websockets.start("ws-flow", "openai", request, response, None, defaults.MAX_EVENT_BYTES, "ws-flow")
    proxy.websockets.message("ws-flow", True, dumps(ws.response_create()), True)
    first = [dumps(m) for m in ws.text_answer(["kept ", "lost", " late"], response_id="resp_1")]
    for message in first[:3]:
        proxy.websockets.message("ws-flow", False, message, True)
    proxy.overloaded = True
    proxy.websockets.message("ws-flow", False, first[3], True)  # counted, not sent
    proxy.overloaded = False
    for message in first[4:]:
        proxy.websockets.message("ws-flow", False, message, True)
    proxy.websockets.message("ws-flow", True, dumps(ws.response_create()), True)
    for message in ws.text_answer(["next"], response_id="resp_2"):
        proxy.websockets.message("ws-flow", False, dumps(message), True)
    proxy.websockets.end("ws-flow", True, 1000, "")
    got = events(hub)
    streams = list(dict.fromkeys(e["stream"] for e in got))
    assert len(streams) == 2
    old, new = ([e for e in got if e["stream"] == s] for s in streams)
    assert "".join(e["text"] for e in old if e["type"] == "text.delta") == "kept "
    assert [e["type"] for e in old][-2:] == ["decode.error", "stream.abort"]
    assert f"a WebSocket message ({len(first[3])} bytes) was not decoded" in old[-1]["message"]
    assert "".join(e["text"] for e in new if e["type"] == "text.delta") == "next"
    assert new[-1]["type"] == "stream.end"


def test_the_chunks_of_a_window_go_in_one_write():
    async def scenario() -> None:
        proxy, hub = joined()
        wire = proxy._transport
        assert isinstance(wire, Wire)
        proxy.window = 0.05
        forward = proxy.http.open("flow-1", REQUEST, RESPONSE, "openai", defaults.MAX_EVENT_BYTES)
        writes = wire.writes  # the open, written at once: the window had long passed
        body = sse("a", "b", "c")
        for i in range(0, len(body), 5):
            forward(body[i : i + 5])  # within the window: they wait for its timer
        assert wire.writes == writes
        await asyncio.sleep(0.1)
        assert wire.writes == writes + 1
        forward(b"")
        proxy.flush()
        assert "".join(e["text"] for e in events(hub) if e["type"] == "text.delta") == "abc"

    asyncio.run(scenario())

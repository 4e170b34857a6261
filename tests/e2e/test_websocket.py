"""End to end over WebSockets: a real `streamtap run`, a real TLS WebSocket upstream on
loopback (permessage-deflate) playing the Responses API over WebSocket (Codex's
transport) and Realtime, a real client (the `websockets` library) through the proxy,
and a subscriber on the API socket."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from proxy_core.client import StreamtapClient
from tests.support import fixtures
from tests.support import websocket as ws
from tests.support.api_http import get_json
from tests.support.pki import make_pki
from tests.support.proc import StreamtapProcess
from tests.support.subscriber import TERMINAL, EventLog, text_of
from tests.support.ws_upstream import WebSocketUpstream

pytestmark = pytest.mark.e2e

HOSTS = ["api.openai.com", "chatgpt.com", "unrouted.test"]
FULL = fixtures.openai_responses()


def script(request: dict[str, Any], path: str) -> list[Any]:
    if "realtime" in path:
        return ws.realtime_answer("rt_1", ("Real", "time ✓"))
    if request.get("generate") is False:
        return ws.warmup_answer()
    prompt = request["input"][0]["content"][0]["text"]
    if prompt == "full":
        return ws.responses_events(FULL, response_id="resp_full")
    if prompt == "dies":
        return [*ws.text_answer(["half ", "an answer"])[:4], "DROP"]
    if prompt == "hang":
        return ws.text_answer(["waiting"])[:3]  # and nothing more: the client gives up
    if prompt == "error":
        return [ws.text_answer(["x"])[0], {"type": "error", "status": 429, "error": {
            "type": "usage_limit_reached", "message": "The usage limit has been reached"}}]
    return ws.text_answer([f"answer to {prompt}", " — done ✓"], response_id=f"resp_{prompt}")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    work = tmp_path_factory.mktemp("e2e_ws")
    pki = make_pki(work / "pki", HOSTS)
    with WebSocketUpstream(pki, script) as upstream:
        proc = StreamtapProcess(
            [
                "--certs", str(work / "certs"),
                "--api-socket", str(work / "run" / "api.sock"),
                "--set", f"ssl_verify_upstream_trusted_ca={pki.ca_cert}",
                *[arg for host in HOSTS
                  for arg in ("--set", f"streamtap_connect_to={host}:443=127.0.0.1:{upstream.port}")],
            ],
            cwd=work,
        )
        try:
            sock = str(work / "run" / "api.sock")
            yield {"work": work, "upstream": upstream, "proc": proc, "sock": sock, "log": EventLog(sock, since=0),
                   "ca": work / "certs" / "mitmproxy-ca-cert.pem"}
        finally:
            proc.stop()
            print(proc.output)


def client_ssl(world) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(world["ca"]))


async def conversation(world, prompts: list[dict], url: str = "wss://api.openai.com/v1/responses",
                       close_after: int | None = None) -> tuple[list[str], Any]:
    """Sends each request and reads the answer up to its terminal message; returns every
    message received, and the handshake's response."""
    got: list[str] = []
    async with connect(url, proxy=world["proc"].proxy_url, ssl=client_ssl(world),
                       additional_headers={"OpenAI-Beta": "responses_websockets=2026-02-06",
                                           "Authorization": "Bearer sk-test-secret"},
                       max_size=None, open_timeout=10) as conn:
        for request in prompts:
            await conn.send(ws.dumps(request).decode())
            while True:
                if close_after is not None and len(got) >= close_after:
                    return got, conn.response
                message = await asyncio.wait_for(conn.recv(), 10)
                got.append(message)
                kind = json.loads(message)["type"]
                if kind in ("response.completed", "response.failed", "response.incomplete", "error", "response.done"):
                    break
        return got, conn.response


def streams_of(log: EventLog, connection_count: int, answers: int, timeout: float = 20) -> list[list[dict]]:
    """The answers (streams) of the newest connections, once all have ended."""
    deadline = time.monotonic() + timeout
    while True:
        events = list(log.events)
        starts = [e for e in events if e["type"] == "stream.start" and e.get("transport") == "websocket"]
        connections = list(dict.fromkeys(e["connection"] for e in starts))[-connection_count:]
        mine = [s for s in starts if s["connection"] in connections]
        out = [[e for e in events if e["stream"] == s["stream"]] for s in mine]
        if len(out) >= answers and all(o[-1]["type"] in TERMINAL for o in out):
            return out
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(out)} websocket streams: {[o[-1]['type'] for o in out]}")
        time.sleep(0.05)


def test_codex_style_session_one_stream_per_answer_with_deflate(world):
    prompts = [ws.response_create(generate=False), ws.response_create(prompt="full"),
               ws.response_create(prompt="second", previous="resp_full")]
    before = get_json(world["sock"], "/healthz")["last_offset"]
    got, response = asyncio.run(conversation(world, prompts))
    # permessage-deflate was negotiated end to end, and the client got every message unchanged.
    assert "permessage-deflate" in response.headers.get("Sec-WebSocket-Extensions", "")
    assert got == world["upstream"].sent[-1]
    assert [json.loads(m) for m in world["upstream"].received[-1]] == prompts

    warm, full, second = streams_of(world["log"], 1, 3)
    for stream in (warm, full, second):
        assert [e["seq"] for e in stream] == list(range(len(stream)))
        start = stream[0]
        assert start["transport"] == "websocket" and start["response"]["status"] == 101
        assert start["request"]["headers"]["authorization"] == "[redacted]"
        assert "secret prompt" not in str(start) and "private preamble" not in str(start)
    assert len({s[0]["connection"] for s in (warm, full, second)}) == 1
    assert warm[0]["request"]["warmup"] is True and warm[-1]["type"] == "stream.end" and text_of(warm) == ""
    assert text_of(full) == FULL.text
    assert "".join(e["text"] for e in full if e["type"] == "reasoning.delta") == FULL.reasoning
    assert [{k: e[k] for k in ("id", "name", "arguments", "index")} for e in full if e["type"] == "tool_call"] \
        == FULL.tool_calls
    assert [{k: e[k] for k in FULL.usage} for e in full if e["type"] == "usage"] == [FULL.usage]
    assert full[-1]["type"] == "stream.end" and full[-1]["finish_reason"] == "completed"
    assert second[0]["request"]["previous_response_id"] == "resp_full"
    assert second[0]["request"]["tool_count"] == 2
    assert text_of(second) == "answer to second — done ✓"
    # The handshake is not a stream, and the API's reassembled message is exact.
    record = get_json(world["sock"], f"/v1/streams/{full[0]['stream']}")
    assert record["message"]["text"] == FULL.text and record["transport"] == "websocket"
    # /v1/streams/next skips the warm-up: the first real answer is the next stream, also
    # for the client library.
    assert get_json(world["sock"], f"/v1/streams/next?after={before}&timeout=5")["id"] == full[0]["stream"]

    async def with_client() -> tuple[dict, dict]:
        async with StreamtapClient(world["sock"]) as tap:
            return await tap.next_stream(after=before, timeout=5), await tap.message(full[0]["stream"])

    nxt, message = asyncio.run(with_client())
    assert nxt["transport"] == "websocket" and message["text"] == FULL.text
    listed = get_json(world["sock"], "/v1/streams")["streams"]
    assert not [s for s in listed if s["response"]["status"] == 101 and s["transport"] == "http"]


def test_upstream_dying_mid_answer_aborts_it(world):
    with pytest.raises(ConnectionClosed):
        asyncio.run(conversation(world, [ws.response_create(prompt="dies")]))
    (stream,) = streams_of(world["log"], 1, 1)
    assert stream[-1]["type"] == "stream.abort" and stream[-1]["by"] == "upstream"
    assert text_of(stream) == "half an answer"


def test_client_closing_mid_answer_aborts_it(world):
    asyncio.run(conversation(world, [ws.response_create(prompt="hang")], close_after=3))
    (stream,) = streams_of(world["log"], 1, 1)
    assert stream[-1]["type"] == "stream.abort" and stream[-1]["by"] == "client"
    assert text_of(stream) == "waiting"


def test_server_error_event_is_stream_error(world):
    got, _ = asyncio.run(conversation(world, [ws.response_create(prompt="error")]))
    (stream,) = streams_of(world["log"], 1, 1)
    assert stream[-1]["type"] == "stream.error" and stream[-1]["status"] == 429
    assert "usage limit" in stream[-1]["message"]


def test_refused_upgrade_is_stream_error(world):
    with pytest.raises(InvalidStatus):
        asyncio.run(conversation(world, [ws.response_create()], url="wss://api.openai.com/v1/responses?refuse=1"))
    deadline = time.monotonic() + 10
    while True:
        starts = [e for e in world["log"].events if e["type"] == "stream.start" and "refuse" in e["request"]["path"]]
        if starts:
            evs = [e for e in world["log"].events if e["stream"] == starts[-1]["stream"]]
            if evs[-1]["type"] in TERMINAL:
                break
        assert time.monotonic() < deadline, "no stream for the refused upgrade"
        time.sleep(0.05)
    assert [e["type"] for e in evs] == ["stream.start", "stream.error"] and evs[-1]["status"] == 403


def test_chatgpt_codex_and_realtime_routes(world):
    got, _ = asyncio.run(conversation(world, [ws.response_create(prompt="chatgpt")],
                                      url="wss://chatgpt.com/backend-api/codex/responses"))
    (codex,) = streams_of(world["log"], 1, 1)
    assert codex[0]["request"]["host"] == "chatgpt.com" and text_of(codex) == "answer to chatgpt — done ✓"
    got, _ = asyncio.run(conversation(world, [{"type": "response.create", "response": {}}],
                                      url="wss://api.openai.com/v1/realtime?model=gpt-realtime"))
    assert got == world["upstream"].sent[-1]
    (rt,) = streams_of(world["log"], 1, 1)
    assert rt[0]["request"]["provider"] == "openai-realtime" and rt[0]["request"]["model"] == "gpt-realtime"
    assert text_of(rt) == "Realtime ✓" and [e["name"] for e in rt if e["type"] == "tool_call"] == ["weather"]
    assert rt[-1]["type"] == "stream.end"


def test_unrouted_websocket_path_is_relayed_and_not_recorded(world):
    got, _ = asyncio.run(conversation(world, [ws.response_create(prompt="plain")],
                                      url="wss://api.openai.com/v1/other-socket"))
    assert got == world["upstream"].sent[-1] and len(got) == 5
    # A routed conversation after it: its stream is the only one since (events are in order).
    asyncio.run(conversation(world, [ws.response_create(prompt="after")]))
    (after,) = streams_of(world["log"], 1, 1)
    assert text_of(after) == "answer to after — done ✓"
    assert not [e for e in world["log"].events if e["type"] == "stream.start" and "other-socket" in e["request"]["path"]]

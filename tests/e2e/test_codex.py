"""The real Codex CLI (npm @openai/codex, installed into build/agents/ on first use) through
a real `streamtap run`, against loopback upstreams: its default transport, the Responses
API over a WebSocket (with its generate:false warm-up and permessage-deflate), and SSE
(a custom provider with supports_websockets = false). Every host Codex contacts is
pointed at loopback."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support import websocket as ws
from tests.support.agents import codex
from tests.support.codex_cli import codex_env, codex_exec, finished_streams
from tests.support.pki import make_pki
from tests.support.proc import loopback_streamtap
from tests.support.subscriber import EventLog, text_of
from tests.support.upstream import Reply, Request, Upstream
from tests.support.ws_upstream import WebSocketUpstream

pytestmark = pytest.mark.e2e

# Every host Codex 0.171 contacts on a run (checked with a logging proxy in front of streamtap).
HOSTS = ["api.openai.com", "chatgpt.com", "ab.chatgpt.com", "api.github.com", "github.com"]
WS_TEXT = ["Hello over ", "a WebSocket — ", "naïve café ✓ 🎉"]
SSE_TEXT = ["Hello over ", "SSE — ", "日本語 ✓"]


def ws_script(request: dict[str, Any], path: str) -> list[Any]:
    if request.get("generate") is False:
        return ws.warmup_answer()
    return ws.codex_answer(WS_TEXT, response_id="resp_ws")


def http_script(request: Request) -> Reply:
    if request.method == "POST" and request.target.startswith("/backend-api/codex/responses"):
        body = b"".join(f"event: {e['type']}\ndata: {json.dumps(e, ensure_ascii=False)}\n\n".encode()
                        for e in ws.codex_answer(SSE_TEXT, response_id="resp_sse"))
        return Reply(chunks=[body[i : i + 97] for i in range(0, len(body), 97)])
    return Reply(status=404, headers=[("content-type", "application/json")], chunks=[b'{"error": "not here"}'])


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    binary = codex()
    work = tmp_path_factory.mktemp("e2e_codex")
    pki = make_pki(work / "pki", HOSTS)
    with WebSocketUpstream(pki, ws_script) as ws_up, Upstream(pki, http_script) as http_up:
        targets = {host: http_up.port for host in HOSTS} | {"api.openai.com": ws_up.port}
        proc = loopback_streamtap(work, pki.ca_cert, targets)
        try:
            sock = str(work / "run" / "api.sock")
            yield {"work": work, "binary": binary, "proc": proc, "ws_up": ws_up, "http_up": http_up,
                   "log": EventLog(sock, since=0), "ca": work / "certs" / "mitmproxy-ca-cert.pem"}
        finally:
            proc.stop()
            print(proc.output)


def run_codex(world, name: str, *config: str) -> subprocess.CompletedProcess:
    env = codex_env(world["work"] / f"home-{name}", world["proc"].proxy_url, world["ca"],
                    OPENAI_API_KEY="sk-test-not-a-key")
    return codex_exec(world["binary"], env, world["work"] / f"project-{name}", *config, model="gpt-5.2-codex")


def test_codex_websocket_default_is_captured_exactly(world):
    result = run_codex(world, "ws")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "".join(WS_TEXT) in result.stdout  # Codex got its answer through the proxy
    handshake = world["ws_up"].handshakes[-1]
    assert handshake["openai-beta"].startswith("responses_websockets=")
    assert "permessage-deflate" in handshake.get("sec-websocket-extensions", "")
    found = finished_streams(world["log"], lambda e: e.get("transport") == "websocket", 2)
    warmups = [s for s in found if s[0]["request"].get("warmup")]
    answers = [s for s in found if not s[0]["request"].get("warmup")]
    assert len(warmups) == 1 and text_of(warmups[0]) == "" and warmups[0][-1]["type"] == "stream.end"
    (answer,) = answers
    assert text_of(answer) == "".join(WS_TEXT) and answer[-1]["type"] == "stream.end"
    assert [e["total_tokens"] for e in answer if e["type"] == "usage"] == [17]
    start = answer[0]
    assert start["connection"] == warmups[0][0]["connection"]
    assert start["request"]["model"] == "gpt-5.2-codex" and start["request"]["tool_count"] > 0
    assert start["request"]["previous_response_id"] == "resp_w"
    assert "say hello" not in json.dumps(start)  # never the prompt
    assert not [s for s in found if s[0]["response"]["status"] == 101 and s[0].get("transport") == "http"]


def test_codex_sse_mode_is_captured_exactly(world):
    provider = [
        'model_provider="loop"', 'model_providers.loop.name="loop"',
        'model_providers.loop.base_url="https://chatgpt.com/backend-api/codex"',
        'model_providers.loop.env_key="OPENAI_API_KEY"', 'model_providers.loop.wire_api="responses"',
        "model_providers.loop.supports_websockets=false",
    ]
    result = run_codex(world, "sse", *provider)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "".join(SSE_TEXT) in result.stdout
    (answer,) = finished_streams(world["log"], lambda e: e.get("transport") == "http"
                                 and e["request"]["path"].startswith("/backend-api/codex/responses"), 1)
    assert text_of(answer) == "".join(SSE_TEXT) and answer[-1]["type"] == "stream.end"
    assert answer[0]["request"]["host"] == "chatgpt.com"


def test_the_cache_holds_the_pinned_codex(world):
    out = subprocess.run([str(world["binary"]), "--version"], capture_output=True, text=True, timeout=30)
    assert Path(world["binary"]).exists() and out.stdout.strip().endswith(os.environ.get(
        "STREAMTAP_CODEX_VERSION", "0.171.0"))

"""The real Claude Code CLI (npm @anthropic-ai/claude-code, installed into build/agents/
on first use), signed in with a claude.ai OAuth token (CLAUDE_CODE_OAUTH_TOKEN), through
a real `streamtap run` against a loopback api.anthropic.com that answers what it asks.
Its printed answer and streamtap's captured stream must both be the upstream's text,
its non-answer calls must not be streams, and the token must appear nowhere."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from tests.support.agents import claude_code
from tests.support.fixtures import _named_sse
from tests.support.pki import make_pki
from tests.support.proc import loopback_streamtap
from tests.support.subscriber import TERMINAL, EventLog, text_of
from tests.support.upstream import Reply, Request, Upstream

pytestmark = pytest.mark.e2e

HOSTS = ["api.anthropic.com", "statsig.anthropic.com", "platform.claude.com", "console.anthropic.com",
         "claude.ai", "mcp-proxy.anthropic.com", "downloads.claude.ai", "storage.googleapis.com"]
TOKEN = "sk-ant-oat01-claude-code-oauth-secret-6d2f"
ANSWER = ["Hello from ", "the loopback — ", "naïve café ✓ 🎉"]
JSON = [("content-type", "application/json")]


def messages_stream(text: list[str], model: str) -> bytes:
    ev = [("message_start", {"type": "message_start", "message": {
        "id": "msg_loop", "type": "message", "role": "assistant", "content": [], "model": model,
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 20, "output_tokens": 1}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "text", "text": ""}})]
    ev += [("content_block_delta", {"type": "content_block_delta", "index": 0,
                                    "delta": {"type": "text_delta", "text": t}}) for t in text]
    ev += [("content_block_stop", {"type": "content_block_stop", "index": 0}),
           ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                              "usage": {"output_tokens": 9}}),
           ("message_stop", {"type": "message_stop"})]
    return b"".join(_named_sse(n, o) for n, o in ev)


def message_json(text: str, model: str) -> bytes:
    return json.dumps({"id": "msg_side", "type": "message", "role": "assistant", "model": model,
                       "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
                       "stop_sequence": None, "usage": {"input_tokens": 5, "output_tokens": 2}}).encode()


def script(request: Request) -> Reply:
    path = request.target
    if request.method == "POST" and path.startswith("/v1/messages/count_tokens"):
        return Reply(headers=JSON, chunks=[b'{"input_tokens": 7}'])
    if request.method == "POST" and path.startswith("/v1/messages"):
        body = json.loads(request.body)
        if body.get("stream") is True:
            data = messages_stream(ANSWER, body.get("model", ""))
            return Reply(chunks=[data[i : i + 61] for i in range(0, len(data), 61)], delay=0.001)
        return Reply(headers=JSON, chunks=[message_json("Greeting", body.get("model", ""))])
    if path.startswith("/api/"):
        return Reply(headers=JSON, chunks=[b"{}"])
    return Reply(status=404, headers=JSON, chunks=[b'{"type":"error","error":{"type":"not_found_error","message":"no"}}'])


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    binary = claude_code()
    work = tmp_path_factory.mktemp("e2e_claude")
    pki = make_pki(work / "pki", HOSTS)
    with Upstream(pki, script) as upstream:
        proc = loopback_streamtap(work, pki.ca_cert, dict.fromkeys(HOSTS, upstream.port),
                                  "--set", f"streamtap_capture_dir={work / 'captures'}")
        try:
            yield {"work": work, "binary": binary, "proc": proc, "upstream": upstream,
                   "log": EventLog(str(work / "run" / "api.sock"), since=0),
                   "ca": work / "certs" / "mitmproxy-ca-cert.pem"}
        finally:
            proc.stop()
            print(proc.output)


def run_claude(world, prompt: str) -> subprocess.CompletedProcess:
    home = world["work"] / "home"
    home.mkdir(exist_ok=True)
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "HTTPS_PROXY": world["proc"].proxy_url,
           "https_proxy": world["proc"].proxy_url, "NO_PROXY": "", "no_proxy": "",
           "NODE_EXTRA_CA_CERTS": str(world["ca"]), "CLAUDE_CODE_OAUTH_TOKEN": TOKEN,
           # Claude Code's documented switches: no telemetry, error reports or updates.
           "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1", "DISABLE_TELEMETRY": "1",
           "DISABLE_ERROR_REPORTING": "1", "DISABLE_BUG_COMMAND": "1"}
    workdir = world["work"] / "project"
    workdir.mkdir(exist_ok=True)
    return subprocess.run([str(world["binary"]), "-p", prompt, "--model", "claude-sonnet-4-5"],
                          env=env, cwd=workdir, capture_output=True, text=True, timeout=120)


def finished_streams(log: EventLog, count: int, timeout: float = 20) -> list[list[dict]]:
    deadline = time.monotonic() + timeout
    while True:
        events = list(log.events)
        starts = [e for e in events if e["type"] == "stream.start"]
        out = [[e for e in events if e["stream"] == s["stream"]] for s in starts]
        if len(out) >= count and all(o[-1]["type"] in TERMINAL for o in out):
            return out
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(out)} streams: {[o[-1]['type'] for o in out]}")
        time.sleep(0.05)


def test_claude_code_oauth_answer_is_captured_exactly(world):
    result = run_claude(world, "say hello")
    requests = [(r.method, r.target) for r in world["upstream"].requests]
    print("Claude Code requests:", requests)  # the closing note's list comes from here
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-3000:], requests)
    assert result.stdout.strip() == "".join(ANSWER)
    answers = [r for r in world["upstream"].requests if r.method == "POST" and r.target.startswith("/v1/messages")
               and not r.target.startswith("/v1/messages/count_tokens")]
    assert answers and all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in answers)
    assert all("oauth-2025-04-20" in r.headers.get("anthropic-beta", "") for r in answers)
    streams = finished_streams(world["log"], len(answers))
    assert len(streams) == len(answers)  # every answer recorded, and nothing else
    main = [s for s in streams if s[0]["request"]["stream"] is True and s[0]["request"]["model"] == "claude-sonnet-4-5"]
    assert main and text_of(main[-1]) == "".join(ANSWER) and main[-1][-1]["type"] == "stream.end"
    for s in streams:
        assert s[0]["request"]["headers"]["authorization"] == "[redacted]"
        assert s[0]["request"]["path"].startswith("/v1/messages")
    captures = "".join(p.read_text() for p in (world["work"] / "captures").glob("*.jsonl"))
    for text in (json.dumps(world["log"].events), captures, world["proc"].output):
        assert TOKEN not in text

"""The real Gemini CLI (npm @google/gemini-cli, installed into build/agents/ on first use)
signed in with a Google account (cached OAuth credentials: the Code Assist backend),
through a real `streamtap run` against a loopback cloudcode-pa.googleapis.com that
answers what it asks: setup calls, its model-routing generateContent (a JSON answer with
a complexity score of 1 to 100), then the streamed answer. Its printed answer and
streamtap's captured stream must both be the upstream's text; setup and telemetry calls
must not be streams; the access token must appear nowhere."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from tests.support.agents import gemini_cli
from tests.support.pki import make_pki
from tests.support.proc import loopback_streamtap
from tests.support.subscriber import TERMINAL, EventLog, text_of
from tests.support.upstream import Reply, Request, Upstream

pytestmark = pytest.mark.e2e

HOSTS = ["cloudcode-pa.googleapis.com", "oauth2.googleapis.com", "www.googleapis.com", "play.googleapis.com",
         "generativelanguage.googleapis.com", "accounts.google.com"]
TOKEN = "ya29.a0-gemini-cli-oauth-secret-3b7c"
ANSWER = ["Hello from ", "the loopback — ", "naïve café ✓ 🎉"]
ROUTER = {"reasoning": "A greeting: simple.", "model_choice": "flash", "complexity_score": 5}
JSON = [("content-type", "application/json; charset=UTF-8")]


def wrapped(candidate: dict, usage: dict | None = None) -> dict:
    response: dict = {"candidates": [candidate], "modelVersion": "gemini-2.5-flash"}
    if usage:
        response["usageMetadata"] = usage
    return {"response": response, "traceId": "trace-loop"}


def script(request: Request) -> Reply:
    host, path = request.headers.get("host", ""), request.target
    if host == "cloudcode-pa.googleapis.com":
        method = path.split(":", 1)[-1].split("?")[0]
        if method == "streamGenerateContent":
            chunks = [wrapped({"content": {"role": "model", "parts": [{"text": t}]}}) for t in ANSWER]
            chunks.append(wrapped({"content": {"role": "model", "parts": [{"text": ""}]}, "finishReason": "STOP"},
                                  {"promptTokenCount": 40, "candidatesTokenCount": 9, "totalTokenCount": 49}))
            return Reply(chunks=[b"data: " + json.dumps(c, ensure_ascii=False).encode() + b"\r\n\r\n" for c in chunks],
                         delay=0.001)
        if method == "generateContent":
            return Reply(headers=JSON, chunks=[json.dumps(wrapped(
                {"content": {"role": "model", "parts": [{"text": json.dumps(ROUTER)}]}, "finishReason": "STOP"},
                {"promptTokenCount": 30, "candidatesTokenCount": 12, "totalTokenCount": 42})).encode()])
        if method == "loadCodeAssist":
            return Reply(headers=JSON, chunks=[json.dumps({
                "currentTier": {"id": "standard-tier", "name": "Gemini Code Assist", "userDefinedCloudaicompanionProject": True},
                "allowedTiers": [{"id": "standard-tier", "isDefault": True}],
                "cloudaicompanionProject": "loop-project"}).encode()])
        if method == "countTokens":
            return Reply(headers=JSON, chunks=[b'{"totalTokens": 10}'])
        return Reply(headers=JSON, chunks=[b"{}"])
    return Reply(headers=JSON, chunks=[b"{}"])


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    binary = gemini_cli()
    work = tmp_path_factory.mktemp("e2e_gemini")
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


def run_gemini(world, prompt: str) -> subprocess.CompletedProcess:
    home = world["work"] / "home"
    gemini_dir = home / ".gemini"
    gemini_dir.mkdir(parents=True, exist_ok=True)
    (gemini_dir / "settings.json").write_text(json.dumps({
        "security": {"auth": {"selectedType": "oauth-personal"}},
        "privacy": {"usageStatisticsEnabled": False}, "telemetry": {"enabled": False},
        "general": {"disableAutoUpdate": True, "disableUpdateNag": True, "enableAutoUpdate": False}}))
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "HTTPS_PROXY": world["proc"].proxy_url,
           "https_proxy": world["proc"].proxy_url, "NO_PROXY": "", "no_proxy": "",
           "NODE_EXTRA_CA_CERTS": str(world["ca"]), "NO_BROWSER": "true",
           # A Google login with a given access token (code_assist/oauth2.ts: GOOGLE_GENAI_USE_GCA
           # with GOOGLE_CLOUD_ACCESS_TOKEN): the Code Assist backend, no refresh, no browser.
           "GOOGLE_GENAI_USE_GCA": "true", "GOOGLE_CLOUD_ACCESS_TOKEN": TOKEN,
           "GOOGLE_CLOUD_PROJECT": "loop-project"}
    workdir = world["work"] / "project"
    workdir.mkdir(exist_ok=True)
    return subprocess.run([str(world["binary"]), "--skip-trust", "-p", prompt], env=env, cwd=workdir, capture_output=True,
                          text=True, timeout=120)


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


def test_gemini_cli_google_login_answer_is_captured_exactly(world):
    result = run_gemini(world, "say hello")
    requests = [(r.method, r.headers.get("host"), r.target) for r in world["upstream"].requests]
    print("Gemini CLI requests:", requests)
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-3000:], requests)
    assert result.stdout.strip() == "".join(ANSWER)
    answers = [r for r in world["upstream"].requests if r.headers.get("host") == "cloudcode-pa.googleapis.com"
               and r.target.startswith(("/v1internal:streamGenerateContent", "/v1internal:generateContent"))]
    assert any(r.target.startswith("/v1internal:streamGenerateContent") for r in answers)
    assert all(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in answers)
    streams = finished_streams(world["log"], len(answers))
    assert len(streams) == len(answers)  # the answers, and no setup or telemetry call
    main = [s for s in streams if s[0]["request"]["stream"] is True]
    assert len(main) == 1 and text_of(main[0]) == "".join(ANSWER) and main[0][-1]["type"] == "stream.end"
    for s in streams:
        assert s[0]["request"]["provider"] == "codeassist"
        assert s[0]["request"]["headers"]["authorization"] == "[redacted]"
    unary = [s for s in streams if s[0]["request"]["stream"] is False]
    for s in unary:  # the model router's call: one body, recorded like any answer
        assert 1 <= json.loads(text_of(s))["complexity_score"] <= 100 and s[-1]["type"] == "stream.end"
    captures = "".join(p.read_text() for p in (world["work"] / "captures").glob("*.jsonl"))
    for text in (json.dumps(world["log"].events), captures, world["proc"].output):
        assert TOKEN not in text

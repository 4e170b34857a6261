"""End to end, the traffic of coding agents on their subscription backends and of SDKs'
non-streamed calls: a real `streamtap run`, loopback HTTPS upstreams that answer what
each agent sends (Gemini CLI's Code Assist, Codex's chatgpt.com backend with a zstd
request body, Claude Code's OAuth login), the official SDKs with stream=False, and
calls that are not answers (count_tokens, loadCodeAssist, model lists), which must not
be recorded. Every distinctive secret is searched for in events, captures and logs."""

from __future__ import annotations

import json
import ssl
import time
import uuid

import anthropic
import httpx
import openai
import pytest

from proxy_core.wire.content import zstd
from tests.support import agent_fixtures as af
from tests.support import fixtures
from tests.support.api_http import get_json
from tests.support.fixtures import _named_sse
from tests.support.pki import make_pki
from tests.support.proc import StreamtapProcess
from tests.support.subscriber import EventLog, text_of
from tests.support.upstream import Reply, Request, Upstream

from .test_e2e import assert_fixture, awkward, http_get

pytestmark = pytest.mark.e2e

CA_HOST, CA_DAILY = "cloudcode-pa.googleapis.com", "daily-cloudcode-pa.googleapis.com"
HOSTS = [CA_HOST, CA_DAILY, "chatgpt.com", "api.anthropic.com", "api.openai.com", "generativelanguage.googleapis.com"]

CODEASSIST_SSE = af.codeassist_sse()
CODEASSIST_GENERATE = af.codeassist_generate()
CODEX = af.codex_sse()
ANTHROPIC = fixtures.anthropic_messages()
ANTHROPIC_MESSAGE = af.anthropic_message()
CHAT_COMPLETION = af.openai_chat_completion()
RESPONSE = af.openai_response()
GEMINI_GENERATE = af.gemini_generate()

# Distinctive secrets, each searched for in every output.
GOOGLE_TOKEN = "ya29.a0-google-oauth-secret-7f3e"
CHATGPT_TOKEN = "eyJhbGciOi-chatgpt-access-secret-91b2"
CHATGPT_ACCOUNT = "acct-secret-5c1d9e"
CLAUDE_OAUTH = "sk-ant-oat01-claude-oauth-secret-4a8b"
SESSION_COOKIE = "__Secure-next-auth.session-token=cookie-secret-2d6f"
OPENAI_KEY = "sk-proj-openai-secret-0c3a"
GEMINI_KEY = "AIza-gemini-secret-8e1b"
SECRETS = [GOOGLE_TOKEN, CHATGPT_TOKEN, CHATGPT_ACCOUNT, CLAUDE_OAUTH, "cookie-secret-2d6f", OPENAI_KEY, GEMINI_KEY]

JSON = [("content-type", "application/json; charset=UTF-8")]


def server_tools_stream() -> bytes:
    """A Messages stream with a block and an event type no normalizer knows."""
    ev = [("message_start", {"type": "message_start", "message": {"usage": {"input_tokens": 3}}}),
          ("content_block_start", {"type": "content_block_start", "index": 0,
                                   "content_block": {"type": "compaction", "content": "Earlier: hello."}}),
          ("content_block_stop", {"type": "content_block_stop", "index": 0}),
          ("content_block_start", {"type": "content_block_start", "index": 1,
                                   "content_block": {"type": "text", "text": ""}}),
          ("content_block_delta", {"type": "content_block_delta", "index": 1,
                                   "delta": {"type": "text_delta", "text": "Still here."}}),
          ("content_block_stop", {"type": "content_block_stop", "index": 1}),
          ("future_event", {"type": "future_event", "n": 1}),
          ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                             "usage": {"output_tokens": 4}}),
          ("message_stop", {"type": "message_stop"})]
    return b"".join(_named_sse(n, o) for n, o in ev)


def scenario(request: Request) -> Reply:
    host = request.headers.get("host", "")
    path = request.target
    if host in (CA_HOST, CA_DAILY):
        if path.startswith("/v1internal:streamGenerateContent"):
            return Reply(chunks=awkward(CODEASSIST_SSE.body, 11), delay=0.001)
        if path.startswith("/v1internal:generateContent"):
            return Reply(headers=JSON, chunks=[CODEASSIST_GENERATE.body])
        if path.startswith("/v1internal:loadCodeAssist"):
            return Reply(headers=JSON, chunks=[b'{"currentTier":{"id":"free-tier"},"cloudaicompanionProject":"p"}'])
    if host == "chatgpt.com":
        if path.startswith("/backend-api/codex/responses"):
            return Reply(chunks=awkward(CODEX.body, 13), delay=0.001)
        if path.startswith("/backend-api/codex/models"):
            return Reply(headers=JSON, chunks=[b'{"models":[{"slug":"gpt-5-codex"}]}'])
    if host == "api.anthropic.com":
        if path.startswith("/v1/messages/count_tokens"):
            return Reply(headers=JSON, chunks=[b'{"input_tokens": 12}'])
        if path.startswith("/api/claude_code/"):
            return Reply(headers=JSON, chunks=[b'{"restrictions": {}}'])
        if path.startswith("/v1/messages"):
            if request.headers.get("x-test-scenario") == "server-tools":
                return Reply(chunks=awkward(server_tools_stream(), 9), delay=0.001)
            if json.loads(request.body).get("stream") is True:
                return Reply(chunks=awkward(ANTHROPIC.body, 9), delay=0.001)
            return Reply(headers=JSON, chunks=awkward(ANTHROPIC_MESSAGE.body, 50), delay=0.001)
    if host == "api.openai.com":
        if path.startswith("/v1/chat/completions"):
            return Reply(headers=JSON, chunks=awkward(CHAT_COMPLETION.body, 40), delay=0.001)
        if path.startswith("/v1/responses"):
            return Reply(headers=JSON, chunks=awkward(RESPONSE.body, 40), delay=0.001)
    if host == "generativelanguage.googleapis.com" and ":generateContent" in path:
        return Reply(headers=JSON, chunks=awkward(GEMINI_GENERATE.body, 30), delay=0.001)
    raise AssertionError(f"unexpected {request.method} {host}{path}")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    work = tmp_path_factory.mktemp("agents")
    pki = make_pki(work / "pki", HOSTS)
    with Upstream(pki, scenario) as upstream:
        proc = StreamtapProcess(
            [
                "--certs", str(work / "certs"),
                "--api-socket", str(work / "run" / "api.sock"),
                "--set", f"ssl_verify_upstream_trusted_ca={pki.ca_cert}",
                "--set", f"streamtap_capture_dir={work / 'captures'}",
                *[arg for host in HOSTS
                  for arg in ("--set", f"streamtap_connect_to={host}:443=127.0.0.1:{upstream.port}")],
            ],
            cwd=work,
        )
        try:
            sock = str(work / "run" / "api.sock")
            yield {"work": work, "upstream": upstream, "proc": proc, "sock": sock, "log": EventLog(sock, since=0),
                   "ctx": ssl.create_default_context(cafile=str(work / "certs" / "mitmproxy-ca-cert.pem"))}
        finally:
            proc.stop()
            print(proc.output)  # shown when a test of this module fails


def tag() -> str:
    return uuid.uuid4().hex[:10]


def http(world) -> httpx.Client:
    return httpx.Client(proxy=world["proc"].proxy_url, verify=world["ctx"], timeout=20)


def upstream_request(world, t: str) -> Request:
    """What the upstream received for the request tagged `t` (the tag header itself is
    removed by streamtap, so requests are matched by a header the test adds)."""
    found = [r for r in world["upstream"].requests if r.headers.get("x-test-id") == t]
    assert len(found) == 1, found
    return found[0]


def assert_not_recorded(world, t: str) -> None:
    """No stream for the request tagged `t`: a request recorded after it has ended, and
    events come in order, so its stream.start would be there by now."""
    after = tag()
    with http(world) as client:
        r = client.post(f"https://{CA_HOST}/v1internal:generateContent", json={"model": "m", "request": {}},
                        headers={"x-streamtap-tag": after})
    assert r.status_code == 200
    world["log"].stream_of(after)
    assert not [e for e in world["log"].events if e["type"] == "stream.start" and e["request"]["tag"] == t]


def test_gemini_cli_code_assist_stream(world):
    t = tag()
    body = {"model": "gemini-2.5-pro", "project": "my-proj-123", "user_prompt_id": "3f1c########1",
            "request": {"contents": [{"role": "user", "parts": [{"text": "fix the bug"}]}],
                        "generationConfig": {"thinkingConfig": {"includeThoughts": True}}}}
    with http(world) as client:
        r = client.post(f"https://{CA_HOST}/v1internal:streamGenerateContent", params={"alt": "sse"}, json=body,
                        headers={"x-streamtap-tag": t, "authorization": f"Bearer {GOOGLE_TOKEN}"})
    assert r.content == CODEASSIST_SSE.body
    events = world["log"].stream_of(t)
    assert_fixture(events, CODEASSIST_SSE)
    start = events[0]["request"]
    assert (start["provider"], start["model"], start["stream"]) == ("codeassist", "gemini-2.5-pro", True)
    assert [e["kind"] for e in events if e["type"] == "signature"] == ["thoughtSignature"]


def test_gemini_cli_model_router_call_is_an_answer_of_one_body(world):
    t = tag()
    with http(world) as client:
        r = client.post(f"https://{CA_DAILY}/v1internal:generateContent",
                        json={"model": "gemini-2.5-flash-lite", "user_prompt_id": "classifier-router",
                              "request": {"contents": [], "generationConfig": {"responseMimeType": "application/json"}}},
                        headers={"x-streamtap-tag": t, "authorization": f"Bearer {GOOGLE_TOKEN}"})
    answer = r.json()["response"]["candidates"][0]["content"]["parts"][0]["text"]
    assert 1 <= json.loads(answer)["complexity_score"] <= 100
    events = world["log"].stream_of(t)
    assert text_of(events) == answer == CODEASSIST_GENERATE.text
    assert events[-1]["type"] == "stream.end" and events[-1]["finish_reason"] == "STOP"
    assert events[0]["request"]["stream"] is False


def test_gemini_cli_setup_calls_are_not_recorded(world):
    t = tag()
    with http(world) as client:
        r = client.post(f"https://{CA_HOST}/v1internal:loadCodeAssist", json={"metadata": {}},
                        headers={"x-streamtap-tag": t})
    assert r.json()["currentTier"]["id"] == "free-tier"
    assert_not_recorded(world, t)


def test_codex_chatgpt_backend_sse_with_a_zstd_request_body(world):
    t = tag()
    raw = json.dumps(af.CODEX_REQUEST).encode()
    compressed = zstd.compress(raw, 3)
    headers = {"x-streamtap-tag": t, "x-test-id": t, "authorization": f"Bearer {CHATGPT_TOKEN}",
               "chatgpt-account-id": CHATGPT_ACCOUNT, "originator": "codex_cli_rs", "content-encoding": "zstd",
               "content-type": "application/json", "accept": "text/event-stream", "cookie": SESSION_COOKIE,
               "session_id": "6f1e7c9a"}
    with http(world) as client:
        r = client.post("https://chatgpt.com/backend-api/codex/responses", content=compressed, headers=headers)
    assert r.content == CODEX.body
    got = upstream_request(world, t)
    assert got.body == compressed and got.headers["content-encoding"] == "zstd"  # forwarded as sent
    events = world["log"].stream_of(t)
    assert_fixture(events, CODEX)
    start = events[0]["request"]
    assert (start["provider"], start["model"], start["stream"]) == ("openai", "gpt-5-codex", True)
    assert start["headers"]["chatgpt-account-id"] == "[redacted]"


def test_codex_model_list_is_not_recorded(world):
    t = tag()
    with http(world) as client:
        r = client.get("https://chatgpt.com/backend-api/codex/models?client_version=0.50.0",
                       headers={"x-streamtap-tag": t, "authorization": f"Bearer {CHATGPT_TOKEN}"})
    assert r.json()["models"][0]["slug"] == "gpt-5-codex"
    assert_not_recorded(world, t)


def claude_code_client(world) -> anthropic.Anthropic:
    """As Claude Code signed in with claude.ai: a bearer OAuth token, the oauth beta."""
    return anthropic.Anthropic(
        auth_token=CLAUDE_OAUTH, max_retries=0,
        default_headers={"anthropic-beta": "claude-code-20250219,oauth-2025-04-20", "x-app": "cli"},
        http_client=anthropic.DefaultHttpxClient(proxy=world["proc"].proxy_url, verify=world["ctx"]))


def test_claude_code_oauth_stream_is_recorded_and_the_token_redacted(world):
    t = tag()
    client = claude_code_client(world)
    with client.beta.messages.stream(model="claude-sonnet-4-5", max_tokens=1024,
                                     messages=[{"role": "user", "content": "weather?"}],
                                     extra_query={"beta": "true"},  # as Claude Code sends it
                                     extra_headers={"x-streamtap-tag": t, "x-test-id": t}) as stream:
        final = stream.get_final_message()
    assert "".join(b.text for b in final.content if b.type == "text") == ANTHROPIC.text
    got = upstream_request(world, t)
    assert got.headers["authorization"] == f"Bearer {CLAUDE_OAUTH}" and "x-api-key" not in got.headers
    events = world["log"].stream_of(t)
    assert_fixture(events, ANTHROPIC)
    start = events[0]["request"]
    assert start["path"] == "/v1/messages?beta=true" and start["headers"]["authorization"] == "[redacted]"
    assert "oauth-2025-04-20" in start["headers"]["anthropic-beta"]


def test_claude_code_non_streamed_call_and_count_tokens(world):
    client = claude_code_client(world)
    t = tag()
    message = client.messages.create(model="claude-haiku-4-5", max_tokens=64, extra_headers={"x-streamtap-tag": t},
                                     messages=[{"role": "user", "content": "title?"}])
    assert "".join(b.text for b in message.content if b.type == "text") == ANTHROPIC_MESSAGE.text
    events = world["log"].stream_of(t)
    assert_fixture(events, ANTHROPIC_MESSAGE)
    assert events[0]["request"]["model"] == "claude-haiku-4-5"
    t2 = tag()
    count = client.messages.count_tokens(model="claude-sonnet-4-5", messages=[{"role": "user", "content": "x"}],
                                         extra_headers={"x-streamtap-tag": t2})
    assert count.input_tokens == 12
    t3 = tag()
    with http(world) as h:
        assert h.get("https://api.anthropic.com/api/claude_code/policy_limits",
                     headers={"x-streamtap-tag": t3, "authorization": f"Bearer {CLAUDE_OAUTH}"}).status_code == 200
    assert_not_recorded(world, t2)
    assert_not_recorded(world, t3)


def test_unknown_kinds_are_events_in_the_message_and_in_metrics(world):
    t = tag()
    with http(world) as client:  # the anthropic SDK's stream helper gives up on a block it does not know
        r = client.post("https://api.anthropic.com/v1/messages", json={"model": "m", "stream": True, "messages": []},
                        headers={"x-streamtap-tag": t, "x-test-scenario": "server-tools", "x-api-key": "k"})
    assert r.content == server_tools_stream()
    events = world["log"].stream_of(t)
    assert text_of(events) == "Still here." and events[-1]["type"] == "stream.end"
    unknown = [e for e in events if e["type"] == "provider.event"]
    assert [e["provider_type"] for e in unknown] == ["content_block.compaction", "future_event"]
    assert unknown[0]["data"]["content_block"]["content"] == "Earlier: hello."
    message = get_json(world["sock"], f"/v1/streams/{events[0]['stream']}")["message"]
    assert [e["provider_type"] for e in message["extra"]] == ["content_block.compaction", "future_event"]
    _, metrics = http_get(world["sock"], "/metrics")
    assert b'streamtap_provider_events_total{provider="anthropic",provider_type="future_event"}' in metrics


def test_openai_sdk_non_streamed_chat_and_responses(world):
    client = openai.OpenAI(api_key=OPENAI_KEY, base_url="https://api.openai.com/v1", max_retries=0,
                           http_client=httpx.Client(proxy=world["proc"].proxy_url, verify=world["ctx"]))
    t = tag()
    completion = client.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "ls"}],
                                                extra_headers={"x-streamtap-tag": t})
    assert completion.choices[0].message.content == CHAT_COMPLETION.text
    assert_fixture(world["log"].stream_of(t), CHAT_COMPLETION)
    t = tag()
    response = client.responses.create(model="gpt-5", input="ls", extra_headers={"x-streamtap-tag": t})
    assert response.output_text == RESPONSE.text
    events = world["log"].stream_of(t)
    assert_fixture(events, RESPONSE)
    assert events[0]["request"]["model"] == "gpt-5"


def test_google_genai_sdk_non_streamed(world):
    from google import genai
    from google.genai import types

    t = tag()
    client = genai.Client(api_key=GEMINI_KEY, http_options=types.HttpOptions(
        headers={"x-streamtap-tag": t}, client_args={"proxy": world["proc"].proxy_url, "verify": world["ctx"]}))
    result = client.models.generate_content(model="gemini-2.5-flash", contents="hi")
    assert "".join(p.text for p in result.candidates[0].content.parts if p.text and not p.thought) == TEXT
    events = world["log"].stream_of(t)
    assert_fixture(events, GEMINI_GENERATE)
    assert events[0]["request"]["model"] == "gemini-2.5-flash"


TEXT = af.TEXT


def test_no_secret_reaches_events_captures_or_logs(world):
    # The calls that carry each secret, in this test's own world (xdist may run the
    # others elsewhere); then every output is searched.
    test_gemini_cli_code_assist_stream(world)
    test_codex_chatgpt_backend_sse_with_a_zstd_request_body(world)
    test_codex_model_list_is_not_recorded(world)
    test_claude_code_oauth_stream_is_recorded_and_the_token_redacted(world)
    test_claude_code_non_streamed_call_and_count_tokens(world)
    test_openai_sdk_non_streamed_chat_and_responses(world)
    test_google_genai_sdk_non_streamed(world)
    events = json.dumps(world["log"].events)
    streams = json.dumps(get_json(world["sock"], "/v1/streams"))
    deadline = time.monotonic() + 10  # the capture writer flushes on its own schedule
    while True:
        captures = "".join(p.read_text() for p in (world["work"] / "captures").glob("*.jsonl"))
        if captures.count('"stream.start"') >= 8 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert captures.count('"stream.start"') >= 8
    for secret in SECRETS:
        for name, text in (("events", events), ("streams", streams), ("captures", captures),
                           ("log", world["proc"].output)):
            assert secret not in text, (secret, name)

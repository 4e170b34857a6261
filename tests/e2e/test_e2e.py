"""End to end: a real `streamtap run`, a real HTTPS upstream on loopback, real clients
(the official openai SDK, curl, raw TLS), and a subscriber on the API socket."""

from __future__ import annotations

import hashlib
import json
import socket
import ssl
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import openai
import pytest

from tests.support import fixtures
from tests.support.fixtures import encode
from tests.support.pki import make_pki
from tests.support.proc import StreamtapProcess
from tests.support.subscriber import EventLog, text_of
from tests.support.upstream import Reply, Request, Upstream

from ..support.api_http import UnixHTTPConnection, get_json

pytestmark = pytest.mark.e2e

CHAT = fixtures.openai_chat_text()
TOOLS = fixtures.openai_chat_tools()
ANTHROPIC = fixtures.anthropic_messages()
GEMINI_SSE = fixtures.gemini_sse()
GEMINI_ARRAY = fixtures.gemini_json_array()
AISTUDIO = fixtures.aistudio()
AISTUDIO_HOST = "alkalimakersuite-pa.clients6.google.com"
HOSTS = ["api.openai.com", "api.anthropic.com", "generativelanguage.googleapis.com", AISTUDIO_HOST, "unrouted.test"]


def awkward(body: bytes, size: int = 7) -> list[bytes]:
    """Small chunks of uneven size: cuts land inside UTF-8 characters and JSON."""
    out, i, k = [], 0, 0
    while i < len(body):
        n = size + (k % 5) - 2
        out.append(body[i : i + n])
        i, k = i + n, k + 1
    return out


def scenario(request: Request) -> Reply:
    name = request.headers.get("x-test-scenario", "chat-text")
    host = request.headers.get("host", "")
    if host == "api.anthropic.com":
        return Reply(chunks=awkward(ANTHROPIC.body, 9), delay=0.001)
    if host == AISTUDIO_HOST:
        return Reply(headers=[("content-type", "application/json+protobuf; charset=UTF-8"), ("content-encoding", "br")],
                     chunks=awkward(encode(AISTUDIO.body, "br"), 5), delay=0.001)
    if host == "generativelanguage.googleapis.com":
        if "alt=sse" in request.target:
            return Reply(chunks=awkward(GEMINI_SSE.body, 9), delay=0.001)
        return Reply(headers=[("content-type", "application/json; charset=UTF-8")],
                     chunks=awkward(GEMINI_ARRAY.body, 9), delay=0.001)
    if name == "chat-text":
        return Reply(chunks=awkward(CHAT.body), delay=0.001)
    if name == "chat-tools":
        return Reply(chunks=awkward(TOOLS.body, 11), delay=0.001)
    if name == "chat-gzip":
        return Reply(
            headers=[("content-type", "text/event-stream"), ("content-encoding", "gzip")],
            chunks=awkward(encode(CHAT.body, "gzip"), 13),
            delay=0.001,
        )
    if name == "rate-limited":
        body = json.dumps({"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}})
        return Reply(status=429, headers=[("content-type", "application/json")], chunks=[body.encode()])
    if name == "upstream-dies":
        return Reply(chunks=awkward(CHAT.body), delay=0.001, abort_after=20)
    if name == "slow":
        return Reply(chunks=awkward(CHAT.body), delay=0.05)
    if name == "unrouted":
        return Reply(headers=[("content-type", "text/plain")], chunks=[b"not intercepted"])
    raise AssertionError(name)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    work = tmp_path_factory.mktemp("e2e")
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
            log = EventLog(sock, since=0)
            yield {
                "work": work, "pki": pki, "upstream": upstream, "proc": proc, "sock": sock, "log": log,
                "ca": work / "certs" / "mitmproxy-ca-cert.pem",
            }
        finally:
            proc.stop()
            print(proc.output)  # shown when a test of this module fails


def openai_client(world) -> openai.OpenAI:
    ctx = ssl.create_default_context(cafile=str(world["ca"]))
    http = httpx.Client(proxy=world["proc"].proxy_url, verify=ctx)
    return openai.OpenAI(api_key="sk-test-secret", base_url="https://api.openai.com/v1", http_client=http, max_retries=0)


def tag() -> str:
    return uuid.uuid4().hex[:10]


def test_socket_is_private_and_healthy(world):
    assert (Path(world["sock"]).stat().st_mode & 0o777) == 0o600
    assert (world["work"] / "certs" / "mitmproxy-ca.pem").stat().st_mode & 0o777 == 0o600
    assert get_json(world["sock"], "/healthz")["status"] == "ok"


def test_openai_sdk_streams_text_and_subscriber_gets_it_exactly(world):
    t = tag()
    client = openai_client(world)
    stream = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_usage": True}, extra_headers={"x-streamtap-tag": t},
    )
    sdk_text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert sdk_text == CHAT.text

    events = world["log"].stream_of(t)
    assert [e["seq"] for e in events] == list(range(len(events)))
    assert events[0]["type"] == "stream.start" and events[-1]["type"] == "stream.end"
    assert text_of(events) == CHAT.text
    end = events[-1]
    assert end["finish_reason"] == "stop"
    assert end["text_sha256"] == hashlib.sha256(CHAT.text.encode()).hexdigest()
    assert end["totals"]["wire_bytes"] == len(CHAT.body)
    usage = [e for e in events if e["type"] == "usage"]
    assert usage[-1]["input_tokens"] == 19 and usage[-1]["total_tokens"] == 50
    request = events[0]["request"]
    assert request["headers"]["authorization"] == "[redacted]"
    assert "sk-test-secret" not in json.dumps(events)
    upstream_seen = [r for r in world["upstream"].requests if r.headers.get("authorization") == "Bearer sk-test-secret"]
    assert upstream_seen and all("x-streamtap-tag" not in r.headers for r in upstream_seen)

    message = get_json(world["sock"], f"/v1/streams/{events[0]['stream']}")
    assert message["state"] == "ended" and message["message"]["text"] == CHAT.text
    assert message["last_seq"] == len(events) - 1


def test_openai_sdk_tool_calls(world):
    t = tag()
    client = openai_client(world)
    stream = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "weather?"}], stream=True,
        extra_headers={"x-streamtap-tag": t, "x-test-scenario": "chat-tools"},
    )
    sdk_args: dict[int, str] = {}
    for chunk in stream:
        for tc in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            sdk_args[tc.index] = sdk_args.get(tc.index, "") + (tc.function.arguments or "")
    expected = [c["arguments"] for c in TOOLS.tool_calls]
    assert [json.loads(sdk_args[i]) for i in sorted(sdk_args)] == expected

    events = world["log"].stream_of(t)
    calls = [e for e in events if e["type"] == "tool_call"]
    assert [{k: c[k] for k in ("id", "name", "arguments", "index")} for c in calls] == TOOLS.tool_calls
    assert events[-1]["finish_reason"] == "tool_calls"
    message = get_json(world["sock"], f"/v1/streams/{events[0]['stream']}")["message"]
    assert [c["arguments"] for c in message["tool_calls"]] == expected


def curl(world, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["curl", "-sS", "--proxy", world["proc"].proxy_url, "--cacert", str(world["ca"]), *args],
        capture_output=True, timeout=30,
    )


def test_curl_gets_the_exact_gzip_bytes_and_subscriber_the_text(world):
    t = tag()
    result = curl(world, "-H", f"x-streamtap-tag: {t}", "-H", "x-test-scenario: chat-gzip",
                  "-H", "accept-encoding: gzip", "https://api.openai.com/v1/chat/completions", "-d", "{}")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"".join(scenario(Request("POST", "/", {"x-test-scenario": "chat-gzip"}, b"")).chunks)
    events = world["log"].stream_of(t)
    assert events[0]["response"]["content_encoding"] == "gzip"
    assert text_of(events) == CHAT.text
    assert events[-1]["totals"]["body_bytes"] == len(CHAT.body)


def test_upstream_error_status_is_stream_error(world):
    t = tag()
    client = openai_client(world)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True,
            extra_headers={"x-streamtap-tag": t, "x-test-scenario": "rate-limited"},
        )
    events = world["log"].stream_of(t)
    assert [e["type"] for e in events] == ["stream.start", "stream.error"]
    assert events[-1]["status"] == 429 and events[-1]["message"] == "Rate limit reached"


def test_upstream_dying_mid_stream_is_abort_by_upstream(world):
    t = tag()
    curl(world, "-H", f"x-streamtap-tag: {t}", "-H", "x-test-scenario: upstream-dies",
         "https://api.openai.com/v1/chat/completions", "-d", "{}")
    events = world["log"].stream_of(t)
    assert events[-1]["type"] == "stream.abort" and events[-1]["by"] == "upstream"
    assert CHAT.text.startswith(text_of(events))


def test_client_abort_then_next_request_holds_only_its_own_events(world):
    for _ in range(3):
        t1, t2 = tag(), tag()
        raw = socket.create_connection(("127.0.0.1", world["proc"].proxy_port))
        raw.sendall(b"CONNECT api.openai.com:443 HTTP/1.1\r\nHost: api.openai.com:443\r\n\r\n")
        assert raw.recv(4096).startswith(b"HTTP/1.1 200")
        tls = ssl.create_default_context(cafile=str(world["ca"])).wrap_socket(raw, server_hostname="api.openai.com")
        tls.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: api.openai.com\r\nContent-Length: 2\r\n"
            + f"x-streamtap-tag: {t1}\r\nx-test-scenario: slow\r\n\r\n{{}}".encode()
        )
        tls.settimeout(10)
        got = b""
        while len(got) < 400:  # headers and some of the answer, not all of it
            got += tls.recv(4096)
        tls.close()  # the user pressed Stop
        result = curl(world, "-H", f"x-streamtap-tag: {t2}", "https://api.openai.com/v1/chat/completions", "-d", "{}")
        assert result.returncode == 0
        aborted = world["log"].stream_of(t1)
        assert aborted[-1]["type"] == "stream.abort" and aborted[-1]["by"] == "client"
        fresh = world["log"].stream_of(t2)
        assert text_of(fresh) == CHAT.text
        assert {e["stream"] for e in fresh} == {fresh[0]["stream"]} != {aborted[0]["stream"]}


def test_unrouted_host_is_passed_through_with_the_upstream_certificate(world):
    raw = socket.create_connection(("127.0.0.1", world["proc"].proxy_port))
    raw.sendall(b"CONNECT unrouted.test:443 HTTP/1.1\r\nHost: unrouted.test:443\r\n\r\n")
    assert raw.recv(4096).startswith(b"HTTP/1.1 200")
    ctx = ssl.create_default_context(cafile=str(world["pki"].ca_cert))  # the upstream's own CA only
    with ctx.wrap_socket(raw, server_hostname="unrouted.test") as tls:
        issuer = dict(x[0] for x in tls.getpeercert()["issuer"])
        assert issuer["commonName"] == "streamtap test upstream CA"
        tls.sendall(b"GET / HTTP/1.1\r\nHost: unrouted.test\r\nx-test-scenario: unrouted\r\nConnection: close\r\n\r\n")
        reply = b""
        while chunk := tls.recv(4096):
            reply += chunk
    assert b"not intercepted" in reply
    streams = get_json(world["sock"], "/v1/streams")["streams"]
    assert all(s["request"]["host"] != "unrouted.test" for s in streams)


def http_get(sock: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    conn = UnixHTTPConnection(sock, timeout=10)
    conn.request("GET", path, headers=headers or {})
    resp = conn.getresponse()
    return resp.status, resp.read()


def test_api_replays_a_stream_then_closes_and_resumes_by_last_event_id(world):
    t = tag()
    assert curl(world, "-H", f"x-streamtap-tag: {t}", "https://api.openai.com/v1/chat/completions", "-d", "{}").returncode == 0
    events = world["log"].stream_of(t)
    sid = events[0]["stream"]

    status, body = http_get(world["sock"], f"/v1/streams/{sid}/events", {"Accept": "application/x-ndjson"})
    assert status == 200
    assert [json.loads(line) for line in body.splitlines()] == events  # replay, then closed at the end

    status, body = http_get(world["sock"], f"/v1/streams/{sid}/events")
    frames = [f for f in body.decode().split("\n\n") if f]
    assert frames[0].startswith(f"id: {events[0]['offset']}\ndata: ")
    assert len(frames) == len(events)

    middle = events[2]["offset"]
    status, body = http_get(world["sock"], f"/v1/events?stream={sid}&follow=0",
                            {"Accept": "application/x-ndjson", "Last-Event-ID": str(middle)})
    assert [json.loads(line) for line in body.splitlines()] == events[3:]

    status, body = http_get(world["sock"], f"/v1/events?types=stream.end&stream={sid}&follow=false&format=ndjson")
    assert [json.loads(line)["type"] for line in body.splitlines()] == ["stream.end"]


def test_api_errors_are_json(world):
    assert http_get(world["sock"], "/v1/streams/nope")[0] == 404
    status, body = http_get(world["sock"], "/v1/events?since=abc")
    assert status == 400 and "since" in json.loads(body)["error"]
    assert http_get(world["sock"], "/nowhere")[0] == 404
    status, body = http_get(world["sock"], "/metrics")
    assert status == 200 and b'streamtap_events_total{type="stream.start"}' in body


def assert_fixture(events, fx) -> None:
    assert [e["seq"] for e in events] == list(range(len(events)))
    assert events[-1]["type"] == "stream.end", events[-1]
    assert text_of(events) == fx.text
    assert "".join(e["text"] for e in events if e["type"] == "reasoning.delta") == fx.reasoning
    assert [{k: c[k] for k in ("id", "name", "arguments", "index")} for c in events if c["type"] == "tool_call"] == fx.tool_calls
    usage = [e for e in events if e["type"] == "usage"][-1]
    assert {k: usage[k] for k in ("input_tokens", "output_tokens", "total_tokens")} == fx.usage
    assert events[-1]["finish_reason"] == fx.finish_reason
    assert not [e for e in events if e["type"] == "decode.error"]


def test_anthropic_sdk(world):
    import anthropic

    t = tag()
    ctx = ssl.create_default_context(cafile=str(world["ca"]))
    client = anthropic.Anthropic(api_key="sk-ant-secret", max_retries=0,
                                 http_client=anthropic.DefaultHttpxClient(proxy=world["proc"].proxy_url, verify=ctx))
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=1024,
                                messages=[{"role": "user", "content": "weather?"}],
                                extra_headers={"x-streamtap-tag": t}) as stream:
        final = stream.get_final_message()
    assert "".join(b.text for b in final.content if b.type == "text") == ANTHROPIC.text
    events = world["log"].stream_of(t)
    assert_fixture(events, ANTHROPIC)
    headers = events[0]["request"]["headers"]
    assert "sk-ant-secret" not in json.dumps(events), headers


def test_google_genai_sdk_streams_sse(world):
    from google import genai
    from google.genai import types

    t = tag()
    ctx = ssl.create_default_context(cafile=str(world["ca"]))
    client = genai.Client(api_key="AIza-secret", http_options=types.HttpOptions(
        headers={"x-streamtap-tag": t},
        client_args={"proxy": world["proc"].proxy_url, "verify": ctx}))
    chunks = list(client.models.generate_content_stream(model="gemini-2.5-flash", contents="flights?"))
    sdk_text = "".join(p.text for c in chunks for p in (c.candidates[0].content.parts or []) if p.text and not p.thought)
    assert sdk_text == GEMINI_SSE.text
    events = world["log"].stream_of(t)
    assert_fixture(events, GEMINI_SSE)
    assert "AIza-secret" not in json.dumps(events)


def test_gemini_json_array_stream_over_httpx(world):
    t = tag()
    ctx = ssl.create_default_context(cafile=str(world["ca"]))
    with httpx.Client(proxy=world["proc"].proxy_url, verify=ctx) as http:
        r = http.post("https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?key=AIza-secret",
                      json={"contents": []}, headers={"x-streamtap-tag": t})
    assert r.content == GEMINI_ARRAY.body
    events = world["log"].stream_of(t)
    assert_fixture(events, GEMINI_ARRAY)
    assert "key=[redacted]" in events[0]["request"]["url"] or "key=%5Bredacted%5D" in events[0]["request"]["url"]


def test_aistudio_web_app_stream(world):
    t = tag()
    ctx = ssl.create_default_context(cafile=str(world["ca"]))
    url = f"https://{AISTUDIO_HOST}/$rpc/google.internal.alkali.applications.makersuite.v1.MakerSuiteService/GenerateContent"
    with httpx.Client(proxy=world["proc"].proxy_url, verify=ctx) as http:
        r = http.post(url, content=b'[["models/gemini-2.5-pro",[[[[null,"hi"]],"user"]]]]',
                      headers={"x-streamtap-tag": t, "content-type": "application/json+protobuf",
                               "cookie": "SID=secret-session"})
    assert r.content == AISTUDIO.body  # httpx undid the br; the proxy changed nothing
    events = world["log"].stream_of(t)
    assert_fixture(events, AISTUDIO)
    assert "secret-session" not in json.dumps(events)


def test_health_checks_and_metrics(world):
    health = get_json(world["sock"], "/healthz")
    assert health["status"] == "ok"
    checks = health["checks"]
    assert checks["ca_loaded"] and checks["hub_running"]
    assert checks["proxy_listening"] == [f"127.0.0.1:{world['proc'].proxy_port}"]
    t = tag()
    assert curl(world, "-H", f"x-streamtap-tag: {t}", "https://api.openai.com/v1/chat/completions",
                "-d", "{}").returncode == 0
    world["log"].stream_of(t)
    status, body = http_get(world["sock"], "/metrics")
    text = body.decode()
    assert status == 200
    assert 'streamtap_streams_total{provider="openai",outcome="end"}' in text
    assert 'streamtap_tap_seconds_bucket{le="+Inf"}' in text
    samples = dict(line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))
    count, wire = int(samples["streamtap_tap_seconds_count"]), int(samples["streamtap_wire_bytes_total"])
    assert count > 10 and wire >= len(CHAT.body)


def test_each_stream_is_captured_to_its_own_file(world):
    t = tag()
    assert curl(world, "-H", f"x-streamtap-tag: {t}", "-H", "authorization: Bearer sk-cap-secret",
                "https://api.openai.com/v1/chat/completions", "-d", "{}").returncode == 0
    events = world["log"].stream_of(t)
    path = world["work"] / "captures"
    deadline = time.monotonic() + 10  # the writer thread works on its own schedule
    while True:
        found = list(path.glob(f"*_{events[0]['stream']}.jsonl"))
        captured = [json.loads(line) for line in found[0].read_text().splitlines()] if found else []
        if (captured and captured[-1]["type"] == "stream.end") or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert captured == events
    assert "sk-cap-secret" not in found[0].read_text()

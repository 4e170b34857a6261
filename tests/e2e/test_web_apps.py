"""The browser chat apps end to end: a real `streamtap run` with its default routes, a
loopback HTTPS upstream answering on each app's real host name (connect_to) in the app's
format (constructed bodies, tests/support/webapps.py), a real client through the proxy,
and the events read back from the API socket."""

from __future__ import annotations

import json
import socket
import ssl
import uuid

import httpx
import pytest

from tests.support import webapps
from tests.support.pki import make_pki
from tests.support.proc import loopback_streamtap
from tests.support.subscriber import EventLog, text_of
from tests.support.upstream import Reply, Request, Upstream

pytestmark = pytest.mark.e2e

HOSTS = ["chatgpt.com", "claude.ai", "gemini.google.com"]
V1, HANDOFF, RESUME = webapps.chatgpt_v1(), webapps.chatgpt_handoff(), webapps.chatgpt_resume()
CLAUDE, GEMINI = webapps.claude_web(), webapps.gemini_web()
CLAUDE_PATH = "/api/organizations/0f3e-org-secret/chat_conversations/5a1b-conv/completion"
GEMINI_PATH = ("/_/BardChatUi/data/assistant.lamda.BardFrontendService/StreamGenerate"
               "?bl=boq_assistant-bard-web-server_20260101&f.sid=-12345secret&hl=en&_reqid=100&rt=c")


def awkward(body: bytes, size: int = 7) -> list[bytes]:
    out, i, k = [], 0, 0
    while i < len(body):
        n = size + (k % 5) - 2
        out.append(body[i : i + n])
        i, k = i + n, k + 1
    return out


def scenario(request: Request) -> Reply:
    host, path = request.headers.get("host", ""), request.target
    slow = request.headers.get("x-test-scenario") == "slow"
    if host == "chatgpt.com":
        if path.startswith("/backend-api/f/conversation/resume"):
            body = RESUME.body
        elif request.headers.get("x-test-scenario") == "handoff":
            body = HANDOFF.body
        else:
            body = V1.body
        return Reply(chunks=awkward(body), delay=0.05 if slow else 0.001)
    if host == "claude.ai":
        if request.headers.get("x-test-scenario") == "limited":
            return Reply(status=429, headers=[("content-type", "application/json")],
                         chunks=[json.dumps(webapps.CLAUDE_RATE_LIMIT).encode()])
        return Reply(chunks=awkward(CLAUDE.body, 9), delay=0.05 if slow else 0.001)
    if host == "gemini.google.com":
        return Reply(headers=[("content-type", "application/json; charset=utf-8")],
                     chunks=awkward(GEMINI.body, 5), delay=0.05 if slow else 0.001)
    raise AssertionError(host)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    work = tmp_path_factory.mktemp("webapps")
    pki = make_pki(work / "pki", HOSTS)
    with Upstream(pki, scenario) as upstream:
        proc = loopback_streamtap(work, pki.ca_cert, dict.fromkeys(HOSTS, upstream.port))
        try:
            sock = str(work / "run" / "api.sock")
            yield {"proc": proc, "log": EventLog(sock, since=0), "ca": work / "certs" / "mitmproxy-ca-cert.pem"}
        finally:
            proc.stop()
            print(proc.output)


def client(world) -> httpx.Client:
    return httpx.Client(proxy=world["proc"].proxy_url, verify=ssl.create_default_context(cafile=str(world["ca"])))


def tag() -> str:
    return uuid.uuid4().hex[:10]


def check(events, text: str, reasoning: str = "", finish: str | None = None) -> None:
    assert [e["seq"] for e in events] == list(range(len(events)))
    assert events[-1]["type"] == "stream.end", events[-1]
    assert text_of(events) == text
    assert "".join(e["text"] for e in events if e["type"] == "reasoning.delta") == reasoning
    assert not [e for e in events if e["type"] == "decode.error"]
    if finish is not None:
        assert events[-1]["finish_reason"] == finish


def test_chatgpt_turn(world):
    t = tag()
    with client(world) as http:
        r = http.post("https://chatgpt.com/backend-api/f/conversation", json={"supported_encodings": ["v1"]},
                      headers={"x-streamtap-tag": t, "authorization": "Bearer eyJ-secret",
                               "cookie": "__Secure-next-auth.session-token=secret", "x-conduit-token": "secret-c",
                               "oai-device-id": "secret-device", "accept": "text/event-stream"})
    assert r.content == V1.body
    events = world["log"].stream_of(t)
    check(events, V1.text, V1.reasoning, "stop")
    assert events[0]["request"]["provider"] == "chatgpt_web"
    assert "secret" not in json.dumps(events)


def test_chatgpt_handoff_then_resume(world):
    t1, t2 = tag(), tag()
    with client(world) as http:
        r1 = http.post("https://chatgpt.com/backend-api/f/conversation", json={},
                       headers={"x-streamtap-tag": t1, "x-test-scenario": "handoff"})
        r2 = http.post("https://chatgpt.com/backend-api/f/conversation/resume",
                       json={"conversation_id": "c-2", "offset": 0},
                       headers={"x-streamtap-tag": t2, "x-conduit-token": "secret-conduit"})
    assert r1.content == HANDOFF.body and r2.content == RESUME.body
    stub, answer = world["log"].stream_of(t1), world["log"].stream_of(t2)
    check(stub, "", finish="handoff")  # the hand-off POST is not an (empty) answer: it says where it went
    (handoff,) = [e for e in stub if e.get("provider_type") == "stream_handoff"]
    check(answer, RESUME.text)
    (complete,) = [e for e in answer if e.get("provider_type") == "message_stream_complete"]
    assert handoff["data"]["conversation_id"] == complete["data"]["conversation_id"] == "c-2"
    assert "secret" not in json.dumps(stub + answer)


def test_claude_completion(world):
    t = tag()
    with client(world) as http:
        r = http.post(f"https://claude.ai{CLAUDE_PATH}", json={"prompt": "hi"},
                      headers={"x-streamtap-tag": t, "cookie": "sessionKey=sk-ant-sid01-secret",
                               "anthropic-device-id": "secret-device"})
    assert r.content == CLAUDE.body
    events = world["log"].stream_of(t)
    check(events, CLAUDE.text, CLAUDE.reasoning, "end_turn")
    assert [c["arguments"] for c in events if c["type"] == "tool_call"] == [{"query": "caf\u00e9"}]
    assert "[redacted]" in events[0]["request"]["path"]
    assert "secret" not in json.dumps(events)


def test_claude_rate_limit_is_a_stream_error(world):
    t = tag()
    with client(world) as http:
        r = http.post(f"https://claude.ai{CLAUDE_PATH}", json={}, headers={"x-streamtap-tag": t,
                                                                          "x-test-scenario": "limited"})
    assert r.status_code == 429
    events = world["log"].stream_of(t)
    assert events[-1]["type"] == "stream.error" and events[-1]["status"] == 429
    assert "exceeded_limit" in events[-1]["message"]


def test_gemini_stream_generate(world):
    t = tag()
    with client(world) as http:
        r = http.post(f"https://gemini.google.com{GEMINI_PATH}", content=b"f.req=%5Bnull%5D&at=secret-xsrf",
                      headers={"x-streamtap-tag": t, "content-type": "application/x-www-form-urlencoded;charset=UTF-8",
                               "cookie": "__Secure-1PSID=secret"})
    assert r.content == GEMINI.body
    events = world["log"].stream_of(t)
    check(events, GEMINI.text, GEMINI.reasoning, "stop")
    assert "secret" not in json.dumps(events)


@pytest.mark.parametrize("host,path", [("chatgpt.com", "/backend-api/f/conversation"), ("claude.ai", CLAUDE_PATH),
                                       ("gemini.google.com", GEMINI_PATH)])
def test_stop_mid_answer_is_a_client_abort_and_the_next_answer_is_clean(world, host, path):
    t1, t2 = tag(), tag()
    raw = socket.create_connection(("127.0.0.1", world["proc"].proxy_port))
    raw.sendall(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
    assert raw.recv(4096).startswith(b"HTTP/1.1 200")
    tls = ssl.create_default_context(cafile=str(world["ca"])).wrap_socket(raw, server_hostname=host)
    tls.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 2\r\n"
                f"x-streamtap-tag: {t1}\r\nx-test-scenario: slow\r\n\r\n{{}}".encode())
    tls.settimeout(10)
    got = b""
    while len(got) < 300:  # the headers and part of the answer
        got += tls.recv(4096)
    tls.close()  # the user pressed Stop
    with client(world) as http:
        r = http.post(f"https://{host}{path}", content=b"{}", headers={"x-streamtap-tag": t2})
    aborted, fresh = world["log"].stream_of(t1), world["log"].stream_of(t2)
    assert aborted[-1]["type"] == "stream.abort" and aborted[-1]["by"] == "client"
    expected = {"chatgpt.com": V1, "claude.ai": CLAUDE, "gemini.google.com": GEMINI}[host]
    assert r.content == expected.body
    check(fresh, expected.text, expected.reasoning)
    assert {e["stream"] for e in fresh} == {fresh[0]["stream"]} != {aborted[0]["stream"]}

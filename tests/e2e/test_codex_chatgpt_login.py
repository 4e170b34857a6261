"""The real Codex CLI (npm @openai/codex, installed into build/agents/ on first use)
signed in with a ChatGPT login, not an API key, through a real `streamtap run` against
loopback upstreams: its default transport, the Responses API over a WebSocket to
chatgpt.com/backend-api/codex/responses, and SSE to the same path (a provider that
requires the OpenAI login and has no WebSockets). The login is a fake $CODEX_HOME/auth.json:
unsigned JWTs with the claims Codex reads, refreshed "now", so Codex never asks
auth.openai.com for new tokens. Codex's answer and streamtap's stream must both be the
upstream's text, and the tokens and account id must appear in no event, log or capture.

What Codex 0.171.0 asked for on one `codex exec` run signed in with ChatGPT (the test
prints the list; every host points at loopback), 19 requests in all:
  chatgpt.com (decrypted: streamtap routes its /backend-api/codex/responses):
    GET  /backend-api/wham/accounts/check           workspace routing: unanswered, Codex never
                                                    opens its WebSocket ("workspace routing
                                                    discovery failed")
    GET  /backend-api/codex/models?client_version=0.171.0   4 times (404 here: Codex then
                                                    uses its bundled model list)
    GET  /backend-api/ps/plugins/installed?limit=200        twice, and once more with
                                                    &includeDownloadUrls=true
    GET  /backend-api/ps/plugins/tooling-state/turtle       twice
    GET  /backend-api/ps/plugins/suggested/codex?scope=GLOBAL&includeInstalled=false  twice
    POST /backend-api/ps/mcp                        twice (Codex's MCP client)
    GET  /backend-api/wham/settings/user
    GET  /backend-api/codex/responses               the WebSocket: a generate:false warm-up,
                                                    then the answer, on one connection
    POST /backend-api/codex/analytics-events/events twice
  ab.chatgpt.com (not routed, passed through undecrypted): POST /otlp/v1/metrics
  auth.openai.com: nothing (no token refresh)
With SSE the same, but POST /backend-api/codex/responses instead of the WebSocket.
streamtap recorded two streams, both on chatgpt.com with transport "websocket": the warm-up
(no text) and the answer; with SSE, one "http" stream. Nothing else on chatgpt.com is a
stream, and every Authorization and ChatGPT-Account-Id is "[redacted]"."""

from __future__ import annotations

import base64
import datetime
import json
import subprocess
import time
from typing import Any

import pytest

from tests.support import websocket as ws
from tests.support.agents import codex
from tests.support.codex_cli import codex_env, codex_exec, finished_streams
from tests.support.fixtures import _named_sse
from tests.support.pki import make_pki
from tests.support.proc import loopback_streamtap
from tests.support.subscriber import EventLog, text_of
from tests.support.upstream import Reply, Request, Upstream

pytestmark = pytest.mark.e2e

HOSTS = ["chatgpt.com", "ab.chatgpt.com", "auth.openai.com", "api.openai.com", "api.github.com", "github.com"]
WS_TEXT = ["Signed in ", "with ChatGPT — ", "naïve café ✓ 🎉"]
SSE_TEXT = ["ChatGPT login ", "over SSE — ", "日本語 ✓"]
JSON = [("content-type", "application/json")]
ACCOUNT_ID = "4f1c9e2a-chatgpt-account-7d3b"
REFRESH_TOKEN = "rt-streamtap-test-refresh-9b27c1"


def _b64(obj: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def fake_jwt(claims: dict[str, Any]) -> str:
    """header.payload.signature, unsigned: Codex decodes the payload, never checks it."""
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.{_b64({'sig': 'not-a-signature'})}"


def _auth(kind: str) -> dict[str, Any]:
    return {"chatgpt_plan_type": "plus", "chatgpt_user_id": "user-streamtap-test", "chatgpt_account_id": ACCOUNT_ID,
            "kind": kind}


EXP = int(time.time()) + 10 * 365 * 86400  # far future: never expired
ID_TOKEN = fake_jwt({"iss": "https://auth.openai.com", "email": "codex-test@example.com", "exp": EXP,
                     "https://api.openai.com/auth": _auth("id")})
ACCESS_TOKEN = fake_jwt({"iss": "https://auth.openai.com", "exp": EXP, "scp": ["openid", "offline_access"],
                         "https://api.openai.com/auth": _auth("access")})
SECRETS = {"access token": ACCESS_TOKEN, "refresh token": REFRESH_TOKEN, "id token": ID_TOKEN,
           "account id": ACCOUNT_ID}


def auth_json() -> str:
    """$CODEX_HOME/auth.json as `codex login` writes it for a ChatGPT login."""
    now = datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")
    return json.dumps({"OPENAI_API_KEY": None, "last_refresh": now, "tokens": {
        "id_token": ID_TOKEN, "access_token": ACCESS_TOKEN, "refresh_token": REFRESH_TOKEN, "account_id": ACCOUNT_ID}})


def ws_script(request: dict[str, Any], path: str) -> list[Any]:
    if request.get("generate") is False:
        return ws.warmup_answer()
    return ws.codex_answer(WS_TEXT, response_id="resp_chatgpt_ws")


def http_script(request: Request) -> Reply:
    path = request.target
    if request.method == "GET" and path.startswith("/backend-api/wham/accounts/check"):
        # Workspace routing: without this account's origin Codex will not open its WebSocket.
        account = {"id": ACCOUNT_ID, "name": None, "structure": "personal",
                   "workspace_backend_origin": "https://chatgpt.com", "account_routing_override": "NO_CONSTRAINT"}
        body = {"accounts": [account], "account_ordering": [ACCOUNT_ID], "default_account_id": ACCOUNT_ID}
        return Reply(headers=JSON, chunks=[json.dumps(body).encode()])
    if request.method == "POST" and path.startswith("/backend-api/codex/responses"):
        data = b"".join(_named_sse(e["type"], e) for e in ws.codex_answer(SSE_TEXT, response_id="resp_chatgpt_sse"))
        return Reply(chunks=[data[i : i + 89] for i in range(0, len(data), 89)])
    # Models, plugins, MCP, analytics, metrics, a token refresh: nothing here.
    return Reply(status=404, headers=JSON, chunks=[b'{"error": {"message": "not here", "code": "not_found"}}'])


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    binary = codex()
    work = tmp_path_factory.mktemp("e2e_codex_chatgpt")
    pki = make_pki(work / "pki", HOSTS)
    # One server for every host: chatgpt.com serves HTTP and the WebSocket on one origin.
    with Upstream(pki, http_script, websocket=ws_script) as upstream:
        proc = loopback_streamtap(work, pki.ca_cert, dict.fromkeys(HOSTS, upstream.port),
                                  "--set", f"streamtap_capture_dir={work / 'captures'}")
        try:
            # Codex trusts streamtap's CA (the decrypted hosts) and the upstream's (the
            # hosts passed through, which then reach the loopback server and are logged).
            bundle = work / "ca-bundle.pem"
            bundle.write_bytes((work / "certs" / "mitmproxy-ca-cert.pem").read_bytes() + pki.ca_cert.read_bytes())
            yield {"work": work, "binary": binary, "proc": proc, "upstream": upstream, "ca": bundle,
                   "log": EventLog(str(work / "run" / "api.sock"), since=0)}
        finally:
            proc.stop()
            print(proc.output)


def run_codex(world, name: str, *config: str) -> tuple[subprocess.CompletedProcess, list[Request], int]:
    """One `codex exec` signed in with ChatGPT (no OPENAI_API_KEY anywhere): its result,
    the requests it made, and the offset its events start from."""
    home = world["work"] / f"home-{name}"
    env = codex_env(home, world["proc"].proxy_url, world["ca"])
    (home / ".codex" / "auth.json").write_text(auth_json())
    first = len(world["upstream"].requests)
    events = list(world["log"].events)
    since = events[-1]["offset"] + 1 if events else 0
    # Only a ChatGPT login will do, and it is read from auth.json, never a keyring.
    result = codex_exec(world["binary"], env, world["work"] / f"project-{name}",
                        'forced_login_method="chatgpt"', 'cli_auth_credentials_store="file"', *config)
    requests = world["upstream"].requests[first:]
    print(f"Codex ({name}) requests:")  # the module docstring's list comes from here
    for r in requests:
        print(f"  {r.method} {r.headers.get('host')} {r.target}")
    return result, requests, since


def assert_signed_in_with_chatgpt(answers: list[Request]) -> None:
    assert answers and all(r.headers["host"] == "chatgpt.com" for r in answers)
    assert all(r.headers["authorization"] == f"Bearer {ACCESS_TOKEN}" for r in answers)
    assert all(r.headers["chatgpt-account-id"] == ACCOUNT_ID for r in answers)


def assert_no_secrets(world) -> None:
    captures = b"".join(p.read_bytes() for p in (world["work"] / "captures").rglob("*") if p.is_file())
    assert captures  # the answers were captured, so the check below means something
    places = {"events": json.dumps(world["log"].events).encode(), "captures": captures,
              "proxy output": world["proc"].output.encode()}
    for place, text in places.items():
        for what, secret in SECRETS.items():
            assert secret.encode() not in text, f"the {what} is in the {place}"


def test_codex_chatgpt_login_websocket_is_captured_exactly(world):
    result, requests, since = run_codex(world, "ws")
    assert result.returncode == 0, (result.stderr[-3000:], [(r.method, r.target) for r in requests])
    assert result.stdout.strip() == "".join(WS_TEXT)  # Codex printed the upstream's answer
    upgrades = [r for r in requests if r.headers.get("upgrade", "").lower() == "websocket"]
    assert [r.target for r in upgrades] == ["/backend-api/codex/responses"]
    assert_signed_in_with_chatgpt(upgrades)
    assert upgrades[0].headers["openai-beta"].startswith("responses_websockets=")
    assert not [r for r in requests if r.method == "POST" and r.target.startswith("/backend-api/codex/responses")]
    assert not [r for r in requests if r.headers.get("host") == "auth.openai.com"]  # no token refresh

    finished_streams(world["log"], lambda e: e["offset"] >= since, 2)
    time.sleep(0.3)  # Codex has exited: anything else it made a stream of is in by now
    found = finished_streams(world["log"], lambda e: e["offset"] >= since, 2)
    assert {(s[0]["request"]["host"], s[0].get("transport")) for s in found} == {("chatgpt.com", "websocket")}
    answers = [s for s in found if not s[0]["request"].get("warmup")]
    warmups = [s for s in found if s[0]["request"].get("warmup")]
    assert len(answers) == 1 and len(warmups) == 1 and text_of(warmups[0]) == ""
    (answer,) = answers
    start = answer[0]
    assert start["request"]["provider"] == "openai"
    assert start["request"]["path"] == "/backend-api/codex/responses"
    assert start["response"]["status"] == 101 and start["connection"] == warmups[0][0]["connection"]
    assert text_of(answer) == "".join(WS_TEXT) and answer[-1]["type"] == "stream.end"
    assert [e["total_tokens"] for e in answer if e["type"] == "usage"] == [17]
    sent = [json.loads(m) for m in world["upstream"].ws_received[-1]]
    assert start["request"]["model"] == [m for m in sent if m.get("generate") is not False][0]["model"]
    assert start["request"]["headers"]["authorization"] == "[redacted]"
    assert start["request"]["headers"]["chatgpt-account-id"] == "[redacted]"
    assert "say hello" not in json.dumps(start)  # never the prompt
    assert_no_secrets(world)


def test_codex_chatgpt_login_sse_is_captured_exactly(world):
    provider = [
        'model_provider="chatgpt_sse"', 'model_providers.chatgpt_sse.name="chatgpt_sse"',
        'model_providers.chatgpt_sse.base_url="https://chatgpt.com/backend-api/codex"',
        'model_providers.chatgpt_sse.wire_api="responses"', "model_providers.chatgpt_sse.requires_openai_auth=true",
        "model_providers.chatgpt_sse.supports_websockets=false",
    ]
    result, requests, since = run_codex(world, "sse", *provider)
    assert result.returncode == 0, (result.stderr[-3000:], [(r.method, r.target) for r in requests])
    assert result.stdout.strip() == "".join(SSE_TEXT)
    posts = [r for r in requests if r.method == "POST" and r.target.startswith("/backend-api/codex/responses")]
    assert len(posts) == 1
    assert_signed_in_with_chatgpt(posts)

    (answer,) = finished_streams(world["log"], lambda e: e["offset"] >= since, 1)
    start = answer[0]
    assert (start["request"]["host"], start["request"]["path"]) == ("chatgpt.com", "/backend-api/codex/responses")
    assert start.get("transport") == "http" and start["request"]["provider"] == "openai"
    assert text_of(answer) == "".join(SSE_TEXT) and answer[-1]["type"] == "stream.end"
    assert start["request"]["headers"]["authorization"] == "[redacted]"
    assert start["request"]["headers"]["chatgpt-account-id"] == "[redacted]"
    assert_no_secrets(world)

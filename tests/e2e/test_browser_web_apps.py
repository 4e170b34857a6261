"""The browser chat apps in a real headless Chromium: the proxy set by a PAC file, our CA
in a fresh NSS database, pages on each app's real host name (chatgpt.com, claude.ai,
gemini.google.com, mapped to a loopback upstream with connect_to) whose fetch() makes
the app's request(s) and reads the stream; ChatGPT's hand-off both ways (the resume
POST, and the topic on a WebSocket to ws.chatgpt.com, a second loopback upstream). The upstream answers in each app's format
(constructed bodies, tests/support/webapps.py); the API must have the exact text. One
test presses "stop" (aborts the fetch) mid-answer and checks the next answer."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

from tests.e2e.test_browser import Chromium, DevTools, open_page, wait_for
from tests.support import webapps
from tests.support.api_http import get_json
from tests.support.pki import make_pki
from tests.support.proc import StreamtapProcess
from tests.support.subscriber import EventLog, text_of
from tests.support.upstream import Reply, Request, Upstream
from tests.support.ws_upstream import WebSocketUpstream

pytestmark = pytest.mark.e2e

HOSTS = ["chatgpt.com", "claude.ai", "gemini.google.com"]
WS_HOST = "ws.chatgpt.com"
SOCKET = "wss://ws.chatgpt.com/ws/user/user-secret-42?verify=secret-verify-7"  # both parts are credentials
V1, HANDOFF, RESUME = webapps.chatgpt_v1(), webapps.chatgpt_handoff(), webapps.chatgpt_resume()
CLAUDE, GEMINI = webapps.claude_web(), webapps.gemini_web()
PATHS = {
    "chatgpt.com": "/backend-api/f/conversation",
    "claude.ai": "/api/organizations/org-1/chat_conversations/conv-1/completion",
    "gemini.google.com": "/_/BardChatUi/data/assistant.lamda.BardFrontendService/StreamGenerate?bl=b&_reqid=1&rt=c",
}
ANSWERS = {"chatgpt.com": V1, "claude.ai": CLAUDE, "gemini.google.com": GEMINI}

# The page: ?tag=T&mode=answer|handoff|topic|stop. It reads every byte of the stream(s) and
# leaves them, as text, in data attributes.
PAGE = b"""<!doctype html><meta charset="utf-8"><title>app</title><body><script>
const params = new URLSearchParams(location.search);
const tag = params.get('tag'), mode = params.get('mode'), path = params.get('path');
async function post(url, tagged, extra, signal) {
  return fetch(url, {method: 'POST', body: JSON.stringify({conversation_id: 'c-2', offset: 0}), signal,
    headers: {'content-type': 'application/json', 'accept': 'text/event-stream', 'x-streamtap-tag': tagged, ...extra}});
}
async function readAll(r, limit) {
  const reader = r.body.getReader(), decoder = new TextDecoder();
  let raw = '';
  for (;;) {
    const {done, value} = await reader.read();
    if (done) break;
    raw += decoder.decode(value, {stream: true});
    if (limit && raw.length >= limit) return raw;
  }
  return raw;
}
function topicText(socket) {  // the hand-off's topic: every item once, until done
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(socket), seen = new Set();
    let sse = '';
    ws.onopen = () => ws.send(JSON.stringify({id: 2, type: 'subscribe', topic_id: 'conversation-turn-tx-2'}));
    ws.onerror = () => reject(new Error('WebSocket error'));
    ws.onmessage = (m) => {
      const value = JSON.parse(m.data);
      for (const raw of Array.isArray(value) ? value : [value]) {
        const entries = raw.type === 'reply' ? raw.reply.catchups : [raw];
        for (const e of entries) {
          const p = e.payload && e.payload.payload;
          if (!p) continue;
          if (p.type === 'done') { ws.close(); resolve(sse); }
          if (p.type === 'stream-item' && !seen.has(p.stream_item_id)) { seen.add(p.stream_item_id); sse += p.encoded_item; }
        }
      }
    };
  });
}
(async () => {
  const d = document.body.dataset;
  if (mode === 'topic') {
    d.first = await readAll(await post(path, tag + '-post', {'x-test-scenario': 'handoff'}));
    d.second = await topicText(params.get('socket'));
  } else if (mode === 'handoff') {
    d.first = await readAll(await post(path, tag + '-post', {'x-test-scenario': 'handoff'}));
    if (!d.first.includes('"stream_handoff"')) throw new Error('no hand-off');
    d.second = await readAll(await post('/backend-api/f/conversation/resume', tag + '-resume', {}));
  } else if (mode === 'stop') {
    const stop = new AbortController();
    const r = await post(path, tag + '-stopped', {'x-test-scenario': 'slow'}, stop.signal);
    d.partial = await readAll(r, 200);
    stop.abort();  // the user pressed Stop
    d.first = await readAll(await post(path, tag + '-next', {}));
  } else {
    d.first = await readAll(await post(path, tag, {}));
  }
  d.done = '1';
})().catch(e => { document.body.dataset.error = String(e); document.body.dataset.done = '1'; });
</script>"""


def serve(request: Request) -> Reply:
    if request.method != "POST":
        return Reply(headers=[("content-type", "text/html; charset=utf-8")], chunks=[PAGE])
    host = request.headers.get("host", "")
    scenario = request.headers.get("x-test-scenario", "")
    if request.target.startswith("/backend-api/f/conversation/resume"):
        body = RESUME.body
    elif scenario == "handoff":
        body = HANDOFF.body
    else:
        body = ANSWERS[host].body
    headers = [("content-type", "application/json; charset=utf-8" if host == "gemini.google.com"
                else "text/event-stream; charset=utf-8")]
    return Reply(headers=headers, chunks=[body[i : i + 23] for i in range(0, len(body), 23)],
                 delay=0.05 if scenario == "slow" else 0.002)


def pac_script(proxy_port: int, dead_port: int) -> str:
    hosts = " || ".join(f'host === "{h}"' for h in [*HOSTS, WS_HOST])
    return f"""function FindProxyForURL(url, host) {{
  if (host === "127.0.0.1" || host === "localhost") return "DIRECT";
  if ({hosts}) return "PROXY 127.0.0.1:{proxy_port}";
  return "PROXY 127.0.0.1:{dead_port}";
}}"""


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    work = tmp_path_factory.mktemp("browser-apps")
    pki = make_pki(work / "pki", [*HOSTS, WS_HOST])
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))  # bound, never listening: anything else the browser asks for is refused
    topic = webapps.chatgpt_topic_messages(V1.body)
    with dead, Upstream(pki, serve) as upstream, WebSocketUpstream(pki, lambda request, path: topic) as ws_up:
        proc = StreamtapProcess(
            ["--certs", str(work / "certs"), "--api-socket", str(work / "api.sock"),
             "--api-listen", "127.0.0.1:0",  # the live page
             "--set", f"ssl_verify_upstream_trusted_ca={pki.ca_cert}",
             *[arg for host in HOSTS
               for arg in ("--set", f"streamtap_connect_to={host}:443=127.0.0.1:{upstream.port}")],
             "--set", f"streamtap_connect_to={WS_HOST}:443=127.0.0.1:{ws_up.port}"],
            cwd=work,
        )
        chrome = None
        try:
            home = work / "home"
            nssdb = home / ".pki" / "nssdb"
            nssdb.mkdir(parents=True)
            certutil = ["certutil", "-d", f"sql:{nssdb}"]
            subprocess.run([*certutil, "-N", "--empty-password"], check=True)
            subprocess.run([*certutil, "-A", "-n", "streamtap", "-t", "C,,", "-i",
                            str(work / "certs" / "mitmproxy-ca-cert.pem")], check=True)
            assert proc.proxy_port
            pac = base64.b64encode(pac_script(proc.proxy_port, dead.getsockname()[1]).encode()).decode()
            chrome = Chromium(
                ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-features=DnsOverHttps", f"--user-data-dir={work / 'profile'}",
                 f"--proxy-pac-url=data:application/x-ns-proxy-autoconfig;base64,{pac}",
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                 "--remote-debugging-port=0", "about:blank"],
                env={**os.environ, "HOME": str(home)},
            )
            assert chrome.ws_url
            yield {"proc": proc, "chrome": chrome, "sock": str(work / "api.sock"), "devtools": DevTools(chrome.ws_url),
                   "log": EventLog(str(work / "api.sock"), since=0), "token": (work / "api-token").read_text().strip()}
        finally:
            if chrome is not None:
                chrome.stop()
            print("--- streamtap ---", proc.output, sep="\n")
            proc.stop()


def run_page(world, host: str, tag: str, mode: str) -> dict:
    from urllib.parse import quote

    devtools = world["devtools"]
    session = open_page(devtools, f"https://{host}/app?tag={tag}&mode={mode}&path={quote(PATHS[host], safe='')}"
                                  f"&socket={quote(SOCKET, safe='')}")
    wait_for(devtools, session, "document.body && document.body.dataset.done", timeout=60)
    data = devtools.evaluate(session, "JSON.stringify(document.body.dataset)")
    out = json.loads(data)
    assert not out.get("error"), out.get("error")
    return out


def assert_exact(events, fx) -> None:
    assert [e["seq"] for e in events] == list(range(len(events)))
    assert events[-1]["type"] == "stream.end", events[-1]
    assert text_of(events) == fx.text
    assert "".join(e["text"] for e in events if e["type"] == "reasoning.delta") == fx.reasoning
    assert not [e for e in events if e["type"] == "decode.error"]
    assert "Chrome" in events[0]["request"]["headers"]["user-agent"]


def test_the_chatgpt_handoff_over_the_websocket_topic_in_chromium(world):
    before = get_json(world["sock"], "/healthz")["last_offset"]
    page = run_page(world, "chatgpt.com", "topic", "topic")
    assert page["first"] == HANDOFF.body.decode() and page["second"] == V1.body.decode()
    stub = world["log"].stream_of("topic-post")
    assert stub[-1]["finish_reason"] == "handoff" and not text_of(stub)
    # The topic is a stream of its own on ws.chatgpt.com, with the answer's exact text,
    # naming the hand-off it carries on; /v1/streams/next gives it, not the stub.
    answer = world["log"].stream_where(lambda e: e["request"]["host"] == WS_HOST and e["offset"] > before)
    start = answer[0]
    assert_exact(answer, V1)
    assert start["transport"] == "websocket" and start["request"]["topic_id"] == webapps.TOPIC
    assert start["request"]["continues"] == stub[0]["stream"]
    assert get_json(world["sock"], f"/v1/streams/{stub[0]['stream']}")["continued_by"] == [start["stream"]]
    nxt = get_json(world["sock"], f"/v1/streams/next?after={before}&host=chatgpt.com&timeout=5")
    assert nxt["id"] == start["stream"]
    everything = json.dumps(answer)  # (the stub's Referer has the test page's URL, which names the socket)
    assert "user-secret-42" not in everything and "secret-verify-7" not in everything
    assert start["request"]["url"] == "https://ws.chatgpt.com/ws/user/[redacted]?[redacted]"


# Two tests, each going through every app: each xdist worker that runs one starts its own
# streamtap and Chromium, so fewer tests start fewer of them.

def test_web_app_answers_and_the_chatgpt_handoff_in_chromium(world):
    for host in HOSTS:
        tag = f"answer-{host.split('.')[0]}"
        page = run_page(world, host, tag, "answer")
        assert page["first"] == ANSWERS[host].body.decode()  # the page got every byte
        assert_exact(world["log"].stream_of(tag), ANSWERS[host])
    page = run_page(world, "chatgpt.com", "handoff", "handoff")
    assert page["first"] == HANDOFF.body.decode() and page["second"] == RESUME.body.decode()
    stub, answer = world["log"].stream_of("handoff-post"), world["log"].stream_of("handoff-resume")
    assert stub[-1]["type"] == "stream.end" and stub[-1]["finish_reason"] == "handoff" and not text_of(stub)
    assert_exact(answer, RESUME)

    # The live page shows each answer as captured.
    devtools, proc = world["devtools"], world["proc"]
    session = open_page(devtools, f"http://127.0.0.1:{proc.api_port}/?token={world['token']}")  # loopback: direct
    wait_for(devtools, session, "document.getElementById('status').textContent === 'live'")
    for tag, fx in (("answer-chatgpt", V1), ("answer-claude", CLAUDE), ("answer-gemini", GEMINI),
                    ("handoff-resume", RESUME)):
        sid = world["log"].stream_of(tag)[0]["stream"]
        card = f"document.querySelector('[data-stream=\"{sid}\"]')"
        wait_for(devtools, session, f"{card} && {card}.className === 'stream ended'")
        assert devtools.evaluate(session, f"{card}.querySelector('.text').textContent") == fx.text
    if shot := os.environ.get("STREAMTAP_SCREENSHOT"):
        metrics = {"width": 1280, "deviceScaleFactor": 1, "mobile": False}
        devtools.call("Emulation.setDeviceMetricsOverride", session, height=800, **metrics)
        height = devtools.evaluate(session, "document.documentElement.scrollHeight")
        devtools.call("Emulation.setDeviceMetricsOverride", session, height=min(height, 2400), **metrics)
        devtools.evaluate(session, "window.scrollTo(0, 0)")
        Path(shot).write_bytes(base64.b64decode(devtools.call("Page.captureScreenshot", session, format="png")["data"]))


def test_stop_mid_answer_in_chromium(world):
    for host in HOSTS:
        tag = f"stop-{host.split('.')[0]}"
        page = run_page(world, host, tag, "stop")
        assert ANSWERS[host].body.decode().startswith(page["partial"]) and page["partial"]
        assert page["first"] == ANSWERS[host].body.decode()
        stopped, fresh = world["log"].stream_of(f"{tag}-stopped"), world["log"].stream_of(f"{tag}-next")
        assert stopped[-1]["type"] == "stream.abort" and stopped[-1]["by"] == "client"
        assert_exact(fresh, ANSWERS[host])
        assert {e["stream"] for e in fresh} == {fresh[0]["stream"]} != {stopped[0]["stream"]}

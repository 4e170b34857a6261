"""A real headless Chromium through streamtap: our CA imported into a fresh NSS database
with certutil, no --ignore-certificate-errors. A page on a loopback HTTPS server streams
an SSE answer with fetch(); the subscriber on the API socket receives it exactly, and
an unrouted host shows the browser its own certificate. The live page at GET / shows
each stream in full, filters them and lists a stream's events.

STREAMTAP_SCREENSHOT=docs/live-page.png makes the live page's test save a screenshot
of the page there (the one in the docs)."""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.support import fixtures
from tests.support.pki import make_pki
from tests.support.proc import StreamtapProcess
from tests.support.subscriber import EventLog, text_of
from tests.support.upstream import Reply, Request, Upstream

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
if CHROMIUM is None or shutil.which("certutil") is None:
    # .ci/run installs both and sets STREAMTAP_REQUIRE_BROWSER: there, this test never skips.
    if os.environ.get("STREAMTAP_REQUIRE_BROWSER"):
        raise RuntimeError("chromium and certutil are required (Debian: chromium libnss3-tools)")
    pytest.skip("chromium or certutil is not installed", allow_module_level=True)

CHAT = fixtures.openai_chat_text()
ROUTED = "chat.streamtap.test"
UNROUTED = "plain.streamtap.test"
OTHER = "messages.streamtap.test"  # a second routed host, for the live page's host filter
# What the upstream answers a POST with, by its x-reply header.
REPLIES = {
    "text": CHAT,
    "tools": fixtures.openai_chat_tools(),
    "responses": fixtures.openai_responses(),
    "anthropic": fixtures.anthropic_messages(),
    "gemini": fixtures.gemini_sse(),
}
LIMITED = b'{"error": {"message": "Rate limit reached for gpt-4o", "type": "requests"}}'

PAGE = b"""<!doctype html><meta charset="utf-8"><title>streamtap</title><body><script>
(async () => {
  const r = await fetch('/v1/chat/completions', {method: 'POST', body: '{}',
    headers: {'content-type': 'application/json', 'x-streamtap-tag': 'browser'}});
  const reader = r.body.getReader(), decoder = new TextDecoder();
  let raw = '';
  for (;;) {
    const {done, value} = await reader.read();
    if (done) break;
    raw += decoder.decode(value, {stream: true});
  }
  document.body.dataset.raw = raw;
  document.body.dataset.done = '1';
})().catch(e => { document.body.dataset.error = String(e); document.body.dataset.done = '1'; });
</script>"""


def serve(request: Request) -> Reply:
    if request.method == "POST":
        reply = request.headers.get("x-reply", "text")
        if reply == "limited":
            return Reply(status=429, headers=[("content-type", "application/json")], chunks=[LIMITED])
        body = REPLIES[reply].body
        size = 11 if reply == "text" else 97  # the longer answers in fewer chunks, to keep the test short
        return Reply(chunks=[body[i : i + size] for i in range(0, len(body), size)], delay=0.002)
    return Reply(headers=[("content-type", "text/html; charset=utf-8")], chunks=[PAGE])


class DevTools:
    """Just enough of the Chrome DevTools Protocol, over its WebSocket."""

    def __init__(self, url: str) -> None:
        from websockets.sync.client import connect

        self.ws = connect(url, max_size=None)
        self.ids = itertools.count(1)
        self.events: list[dict] = []

    def call(self, method: str, session: str | None = None, **params) -> dict:
        msg_id = next(self.ids)
        msg = {"id": msg_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        while True:
            reply = json.loads(self.ws.recv(timeout=30))
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def evaluate(self, session: str, expression: str):
        result = self.call("Runtime.evaluate", session, expression=expression, returnByValue=True)
        return result["result"].get("value")


def pac_script(proxy_port: int, dead_port: int) -> str:
    """Only the test's hosts go through streamtap; loopback goes direct; anything else
    Chromium asks for by itself (sign-in, update and time checks, which the --disable
    flags do not all stop) goes to a loopback port that refuses, so that no request of
    the browser leaves the machine or makes streamtap look a name up."""
    return f"""function FindProxyForURL(url, host) {{
  if (host === "127.0.0.1" || host === "localhost") return "DIRECT";
  if (host === "{ROUTED}" || host === "{UNROUTED}") return "PROXY 127.0.0.1:{proxy_port}";
  return "PROXY 127.0.0.1:{dead_port}";
}}"""


class Chromium:
    """A headless Chromium whose stderr is read all along (a full pipe would stall it),
    and which is ready once it prints where its DevTools endpoint listens."""

    def __init__(self, args: list[str], env: dict[str, str], timeout: float = 60) -> None:
        self.lines: list[str] = []
        self.ws_url: str | None = None
        self._ready = threading.Event()
        self.proc = subprocess.Popen([CHROMIUM, *args], env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, daemon=True).start()
        self._ready.wait(timeout)
        if self.ws_url is None:
            self.stop()
            raise RuntimeError("chromium did not start:\n" + "\n".join(self.lines[-50:]))

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            if self.ws_url is None and (m := re.search(r"DevTools listening on (ws://\S+)", line)):
                self.ws_url = m.group(1)
                self._ready.set()
        self._ready.set()  # it exited

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def events_status(socket_path: str) -> tuple[int, str]:
    """What GET /v1/events answers (history only, not following)."""
    from ..support.api_http import UnixHTTPConnection

    conn = UnixHTTPConnection(socket_path, timeout=10)
    try:
        conn.request("GET", "/v1/events?since=0&follow=0", headers={"Accept": "application/x-ndjson"})
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    finally:
        conn.close()


@pytest.fixture(scope="module")
def browser_world(tmp_path_factory):
    work = tmp_path_factory.mktemp("browser")
    pki = make_pki(work / "pki", [ROUTED, UNROUTED, OTHER])
    # Bound, never listening: a connection to it is refused at once, and no one else
    # can take the port while the browser runs.
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    with dead, Upstream(pki, serve) as upstream:
        proc = StreamtapProcess(
            ["--certs", str(work / "certs"), "--api-socket", str(work / "api.sock"),
             "--route", f"{ROUTED}:^/v1/chat=openai", "--api-listen", "127.0.0.1:0",
             "--set", f"ssl_verify_upstream_trusted_ca={pki.ca_cert}",
             "--set", f"streamtap_connect_to={ROUTED}:443=127.0.0.1:{upstream.port}",
             "--set", f"streamtap_connect_to={UNROUTED}:443=127.0.0.1:{upstream.port}"],
            cwd=work,
        )
        chrome = None
        try:
            # Both tests that follow the events need the API to serve them: if it does
            # not, say so now, with what streamtap logged, not after two timeouts.
            status, body = events_status(str(work / "api.sock"))
            assert status == 200, f"GET /v1/events: {status} {body}\n" + proc.output
            home = work / "home"
            nssdb = home / ".pki" / "nssdb"
            nssdb.mkdir(parents=True)
            certutil = ["certutil", "-d", f"sql:{nssdb}"]
            subprocess.run([*certutil, "-N", "--empty-password"], check=True)
            subprocess.run([*certutil, "-A", "-n", "streamtap", "-t", "C,,", "-i",
                            str(work / "certs" / "mitmproxy-ca-cert.pem")], check=True)
            # The unrouted host's own CA, so that the browser can load it directly.
            subprocess.run([*certutil, "-A", "-n", "upstream", "-t", "C,,", "-i", str(pki.ca_cert)], check=True)
            assert proc.proxy_port
            pac = base64.b64encode(pac_script(proc.proxy_port, dead.getsockname()[1]).encode()).decode()
            chrome = Chromium(
                ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-features=DnsOverHttps", f"--user-data-dir={work / 'profile'}",
                 f"--proxy-pac-url=data:application/x-ns-proxy-autoconfig;base64,{pac}",
                 # Chromium looks names up even for proxied requests (to estimate the
                 # network's quality): answer it here, not with the resolver's traffic.
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                 "--remote-debugging-port=0", "about:blank"],
                env={**os.environ, "HOME": str(home)},
            )
            assert chrome.ws_url
            yield {"proc": proc, "chrome": chrome, "devtools": DevTools(chrome.ws_url),
                   "log": EventLog(str(work / "api.sock"), since=0), "log_socket": str(work / "api.sock"),
                   "work": work, "pki": pki, "upstream_port": upstream.port}
        finally:
            if chrome is not None:
                chrome.stop()
            proc.stop()


@pytest.fixture(autouse=True)
def logs_of_each_test(browser_world):
    """What streamtap and Chromium logged during the test: pytest shows it if it fails."""
    proc, chrome = browser_world["proc"], browser_world["chrome"]
    since_proc, since_chrome = len(proc.lines), len(chrome.lines)
    yield
    print("--- streamtap ---", *proc.lines[since_proc:], sep="\n")
    print("--- chromium ---", *chrome.lines[since_chrome:], sep="\n")


def open_page(devtools: DevTools, url: str) -> str:
    target = devtools.call("Target.createTarget", url="about:blank")["targetId"]
    session = devtools.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
    for domain in ("Network", "Page", "Log", "Runtime"):  # Log and Runtime: the page's errors and exceptions
        devtools.call(f"{domain}.enable", session)
    devtools.call("Page.navigate", session, url=url)
    return session


def wait_for(devtools: DevTools, session: str, expression: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = devtools.evaluate(session, expression)
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError(expression)


def issuer_of(devtools: DevTools, url: str) -> str:
    for event in devtools.events:
        if event.get("method") == "Network.responseReceived" and event["params"]["response"]["url"] == url:
            return event["params"]["response"]["securityDetails"]["issuer"]
    raise AssertionError(f"no response for {url}")


def test_chromium_fetch_stream_is_captured_exactly(browser_world):
    devtools = browser_world["devtools"]
    url = f"https://{ROUTED}/page"
    session = open_page(devtools, url)
    wait_for(devtools, session, "document.body && document.body.dataset.done")
    assert devtools.evaluate(session, "document.body.dataset.error || ''") == ""
    assert devtools.evaluate(session, "document.body.dataset.raw") == CHAT.body.decode()
    assert issuer_of(devtools, url) == "streamtap local CA"  # decrypted, with our CA, trusted

    events = browser_world["log"].stream_of("browser")
    assert text_of(events) == CHAT.text and events[-1]["type"] == "stream.end"
    assert events[0]["request"]["headers"]["user-agent"].find("Chrome") >= 0


def test_chromium_sees_the_unrouted_hosts_own_certificate(browser_world):
    devtools = browser_world["devtools"]
    url = f"https://{UNROUTED}/page"
    session = open_page(devtools, url)
    wait_for(devtools, session, "document.body && document.body.dataset.done")
    assert issuer_of(devtools, url) == "streamtap test upstream CA"
    from ..support.api_http import get_json

    streams = get_json(browser_world["log_socket"], "/v1/streams")["streams"]
    assert all(s["request"]["host"] != UNROUTED for s in streams)  # not decrypted, not recorded


def test_live_page_shows_text_as_it_streams(browser_world):
    devtools = browser_world["devtools"]
    proc = browser_world["proc"]
    assert proc.api_port
    # The TCP API got a generated token (0600, beside the socket); the page takes it from its URL.
    token_file = Path(browser_world["log_socket"]).parent / "api-token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    token = token_file.read_text().strip()
    assert token not in proc.output  # never logged
    session = open_page(devtools, f"http://127.0.0.1:{proc.api_port}/?token={token}")  # loopback: not proxied
    wait_for(devtools, session, "document.getElementById('status').textContent === 'live'")
    import subprocess as sp

    ca = str(Path(browser_world["log_socket"]).parent / "certs" / "mitmproxy-ca-cert.pem")
    result = sp.run(["curl", "-sS", "--proxy", proc.proxy_url, "--cacert", ca, "-H", "x-streamtap-tag: page",
                     f"https://{ROUTED}/v1/chat/completions", "-d", "{}"], capture_output=True, timeout=30)
    assert result.returncode == 0
    sid = browser_world["log"].stream_of("page")[0]["stream"]
    selector = f"document.querySelector('[data-stream=\"{sid}\"]')"
    wait_for(devtools, session, f"{selector} && {selector}.className === 'stream ended'")
    assert devtools.evaluate(session, f"{selector}.querySelector('.text').textContent") == CHAT.text
    assert devtools.evaluate(session, f"{selector}.querySelector('.tag').textContent") == "page"


PAGE_TOKEN = "page-secret"
# tag, host, path, x-reply: four providers on two hosts, and a refused request.
PAGE_STREAMS = [
    ("tools", ROUTED, "/v1/chat/completions", "tools"),
    ("responses", ROUTED, "/v1/responses", "responses"),
    ("claude", OTHER, "/v1/messages", "anthropic"),
    ("gemini", ROUTED, "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", "gemini"),
    ("frames", OTHER, "/v1/chat/completions", "text"),  # the generic sse provider: its frames name the model
    ("limited", ROUTED, "/v1/chat/completions", "limited"),
]
# Every card as the page shows it: each field's text, and where its tool calls are laid out.
CARDS = """[...document.querySelectorAll('#streams > .stream')].map((card) => {
  const field = (name) => card.querySelector('.' + name);
  const out = {id: card.dataset.stream, className: card.className};
  for (const name of ['state', 'provider', 'host', 'path', 'status', 'model', 'tag', 'started', 'duration',
                      'ttft', 'usage', 'finish', 'note', 'text', 'reasoning']) out[name] = field(name).textContent;
  out.model_shown = field('model').offsetParent !== null;
  out.duration_s = parseFloat(field('duration').title);
  out.ttft_s = field('ttft').title ? parseFloat(field('ttft').title) : null;
  out.tools = [...card.querySelectorAll('.tool')].map((t) => {
    const box = t.getBoundingClientRect();
    return {name: t.querySelector('.name').textContent, args: t.querySelector('.args').textContent,
            top: box.top, bottom: box.bottom};
  });
  return out;
})"""
SHOWN = """[...document.querySelectorAll('#streams > .stream')].filter((c) => c.offsetParent !== null)
  .map((c) => c.querySelector('.tag').textContent).sort()"""
TERMINAL_STATE = {"stream.end": "ended", "stream.abort": "aborted", "stream.error": "error"}
CONTENT = ("text.delta", "reasoning.delta", "tool_call")


@pytest.fixture
def page_proxy(browser_world):
    """A streamtap of the live page's test alone: its hub starts empty (so the page shows
    its empty state), its TCP API wants a token, and it routes four providers on two hosts."""
    work, port, pki = browser_world["work"], browser_world["upstream_port"], browser_world["pki"]
    proc = StreamtapProcess(
        ["--certs", str(work / "certs"), "--api-socket", str(work / "page.sock"), "--api-listen", "127.0.0.1:0",
         "--route", f"{ROUTED}:^/v1/(chat/completions|responses)=openai",
         "--route", f"{ROUTED}:streamGenerateContent=gemini",
         "--route", f"{OTHER}:^/v1/messages=anthropic",
         "--route", f"{OTHER}:^/v1/chat=sse",
         "--set", f"streamtap_api_token={PAGE_TOKEN}",
         "--set", f"ssl_verify_upstream_trusted_ca={pki.ca_cert}",
         "--set", f"streamtap_connect_to={ROUTED}:443=127.0.0.1:{port}",
         "--set", f"streamtap_connect_to={OTHER}:443=127.0.0.1:{port}"],
        cwd=work,
    )
    try:
        yield proc
    finally:
        proc.stop()
        print("--- streamtap of the live page ---", *proc.lines, sep="\n")


def through_proxy(proc: StreamtapProcess, host: str, path: str, reply: str, tag: str) -> None:
    ca = str(proc.cwd / "certs" / "mitmproxy-ca-cert.pem")
    result = subprocess.run(["curl", "-sS", "--proxy", proc.proxy_url, "--cacert", ca, "-H", f"x-streamtap-tag: {tag}",
                             "-H", f"x-reply: {reply}", f"https://{host}{path}", "-d", "{}"],
                            capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr


def expected_card(events: list[dict]) -> dict:
    """What a card must say, from the stream's own events."""
    start, end = events[0], events[-1]
    usage = [e for e in events if e["type"] == "usage"]
    return {
        "state": TERMINAL_STATE[end["type"]],
        "provider": start["request"]["provider"],
        "host": start["request"]["host"],
        "path": start["request"]["path"],
        "status": str(end.get("status") or start["response"]["status"]),
        "tag": start["request"]["tag"],
        "started": time.strftime("%H:%M:%S", time.localtime(start["time"])),
        "usage": f"{usage[-1]['input_tokens']} in · {usage[-1]['output_tokens']} out · {usage[-1]['total_tokens']} total"
                 if usage else "",
        "finish": end.get("finish_reason") or "",
        "text": text_of(events),
        "reasoning": "".join(e["text"] for e in events if e["type"] == "reasoning.delta"),
    }


def choose(devtools: DevTools, session: str, name: str, value: str) -> None:
    """Pick a filter as a person would: the select's value, then its change event."""
    chosen = devtools.evaluate(session, f"""(() => {{
      const select = document.querySelector('select[data-filter="{name}"]');
      select.value = {json.dumps(value)};
      select.dispatchEvent(new Event('change'));
      return select.value; }})()""")
    assert chosen == value  # the page offered it


def click(devtools: DevTools, session: str, selector: str) -> None:
    """A real mouse click at the element, through the browser's input pipeline."""
    x, y = devtools.evaluate(session, f"""(() => {{
      const el = document.querySelector({json.dumps(selector)});
      el.scrollIntoView({{block: 'center'}});
      const box = el.getBoundingClientRect();
      return [box.left + 4, box.top + box.height / 2]; }})()""")
    for kind in ("mousePressed", "mouseReleased"):
        devtools.call("Input.dispatchMouseEvent", session, type=kind, x=x, y=y, button="left", clickCount=1)


def test_live_page_shows_each_stream_filters_and_lists_its_events(browser_world, page_proxy):
    devtools, proc = browser_world["devtools"], page_proxy
    log = EventLog(str(proc.cwd / "page.sock"), since=0)
    # The TCP API wants a token; the page takes it from its URL for its EventSource.
    session = open_page(devtools, f"http://127.0.0.1:{proc.api_port}/?token={PAGE_TOKEN}")
    wait_for(devtools, session, "document.getElementById('status').textContent === 'live'")
    empty = devtools.evaluate(session, "document.getElementById('empty').offsetParent !== null"
                                       " && document.getElementById('empty').innerText")
    assert empty and "Waiting for streams" in empty
    assert "streamtap env" in empty and "--proxy http://127.0.0.1:8080" in empty  # how to point a client at it

    for tag, host, path, reply in PAGE_STREAMS:
        through_proxy(proc, host, path, reply, tag)
    streams = {tag: log.stream_of(tag) for tag, *_ in PAGE_STREAMS}
    wait_for(devtools, session, "document.querySelectorAll('#streams > .stream:not(.active)').length"
                                f" === {len(PAGE_STREAMS)}")
    assert devtools.evaluate(session, "document.getElementById('empty').offsetParent") is None
    cards = {card["tag"]: card for card in devtools.evaluate(session, CARDS)}
    assert sorted(cards) == sorted(streams)

    for tag, events in streams.items():
        card = cards[tag]
        assert {k: card[k] for k in expected_card(events)} == expected_card(events), tag
        assert card["className"] == f"stream {card['state']}"
        assert card["duration_s"] == pytest.approx(events[-1]["time"] - events[0]["time"], abs=0.0011)
        assert re.fullmatch(r"\d+ ms|\d+\.\d\d s", card["duration"]), card["duration"]
        content = [e for e in events if e["type"] in CONTENT]
        if content:
            assert card["ttft_s"] == pytest.approx(content[0]["time"] - events[0]["time"], abs=0.0011), tag
            assert card["ttft_s"] <= card["duration_s"] + 0.0011
        else:
            assert card["ttft"] == "" and card["ttft_s"] is None
        calls = [e for e in events if e["type"] == "tool_call"]
        assert [(t["name"], json.loads(t["args"])) for t in card["tools"]] == [(c["name"], c["arguments"]) for c in calls]
        # The model: the stream.start request summary's (the body's `model`, a Gemini
        # path's) when it names one, else what a generic provider's frames say.
        expected_model = events[0]["request"].get("model") or ("gpt-4o-2024-08-06" if tag == "frames" else "")
        assert card["model"] == expected_model and bool(card["model_shown"]) == bool(expected_model), tag

    # A Responses call does not look like a chat completion.
    assert cards["responses"]["path"] == "/v1/responses" and cards["tools"]["path"] == "/v1/chat/completions"
    assert cards["responses"]["usage"] == "11 in · 22 out · 33 total" and cards["responses"]["finish"] == "completed"
    # Two tool calls, each on a line of its own, arguments on one line as they are short.
    tools = cards["tools"]["tools"]
    assert [t["name"] for t in tools] == ["get_weather", "lookup"] and cards["tools"]["finish"] == "tool_calls"
    assert all("\n" not in t["args"] for t in tools)
    assert tools[1]["top"] >= tools[0]["bottom"] - 0.5
    assert cards["limited"]["state"] == "error" and cards["limited"]["status"] == "429"
    assert cards["limited"]["note"] == streams["limited"][-1]["message"]
    assert "Rate limit reached" in cards["limited"]["note"]

    # Filters, client-side, one after another, and in the URL's fragment.
    all_tags = sorted(streams)
    choose(devtools, session, "provider", "anthropic")
    assert devtools.evaluate(session, SHOWN) == ["claude"]
    assert devtools.evaluate(session, "location.hash") == "#provider=anthropic"
    assert devtools.evaluate(session, "document.getElementById('count').textContent") == "6 streams, 0 active, 1 shown"
    choose(devtools, session, "tag", "responses")
    assert devtools.evaluate(session, SHOWN) == []
    assert devtools.evaluate(session, "document.getElementById('nomatch').offsetParent !== null")
    choose(devtools, session, "provider", "")
    assert devtools.evaluate(session, SHOWN) == ["responses"]
    choose(devtools, session, "tag", "")
    choose(devtools, session, "host", OTHER)
    assert devtools.evaluate(session, SHOWN) == ["claude", "frames"]
    choose(devtools, session, "host", "")
    choose(devtools, session, "state", "error")
    assert devtools.evaluate(session, SHOWN) == ["limited"]
    choose(devtools, session, "state", "")
    assert devtools.evaluate(session, SHOWN) == all_tags and devtools.evaluate(session, "location.hash") == ""

    # A click on a stream lists its events, as GET /v1/streams/{id}/events has them.
    events = streams["tools"]
    card = f'[data-stream="{events[0]["stream"]}"]'
    click(devtools, session, f"{card} .head")
    rows = wait_for(devtools, session, f"""(() => {{
      const rows = document.querySelectorAll('{card} .events .ev');
      return rows.length === {len(events)}
        && [...rows].map((r) => [r.querySelector('.seq').textContent, r.querySelector('.type').textContent]); }})()""")
    assert rows == [[f"#{e['seq']}", e["type"]] for e in events]
    assert "get_weather" in devtools.evaluate(session, f"document.querySelector('{card} .events').textContent")
    assert devtools.evaluate(session, f"document.querySelector('{card} .head').getAttribute('aria-expanded')") == "true"

    if shot := os.environ.get("STREAMTAP_SCREENSHOT"):
        # A viewport as tall as the page: all of it, and no scroll bar cutting the cards.
        metrics = {"width": 1280, "deviceScaleFactor": 1, "mobile": False}
        devtools.call("Emulation.setDeviceMetricsOverride", session, height=800, **metrics)
        height = devtools.evaluate(session, "document.documentElement.scrollHeight")
        devtools.call("Emulation.setDeviceMetricsOverride", session, height=height, **metrics)
        devtools.evaluate(session, "window.scrollTo(0, 0)")
        Path(shot).write_bytes(base64.b64decode(devtools.call("Page.captureScreenshot", session, format="png")["data"]))

    # No request of the page failed: not the API's, not the favicon's (which Chromium
    # asks for by itself, outside the page's network log, so streamtap's log says).
    failed = [e["params"]["response"]["url"] for e in devtools.events
              if e.get("sessionId") == session and e.get("method") == "Network.responseReceived"
              and e["params"]["response"]["status"] >= 400]
    assert failed == []
    assert [line for line in proc.lines if "favicon" in line] == []
    # Nor did anything break: no script error, no Content-Security-Policy violation.
    errors = [e["params"] for e in devtools.events if e.get("sessionId") == session
              and (e.get("method") == "Runtime.exceptionThrown"
                   or e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]
    assert errors == []
    devtools.call("Target.closeTarget", targetId=devtools.call("Target.getTargetInfo", session)["targetInfo"]["targetId"])


XSS = "<img src=x onerror=alert(1)>"


def responses_with_everything() -> bytes:
    """A Responses stream with more than text: a citation, a web search the provider ran
    (a tool_result), a refusal, a partial image (media), encrypted reasoning (a
    signature) and an event type the normalizer does not know (a provider.event), their
    texts carrying markup that must show as text."""
    events = [
        ("response.created", {"response": {"id": "resp_x", "status": "in_progress"}}),
        ("response.refusal.delta", {"item_id": "msg_2", "output_index": 2, "content_index": 0, "delta": "I can't "}),
        ("response.refusal.delta", {"item_id": "msg_2", "output_index": 2, "content_index": 0, "delta": XSS}),
        ("response.output_text.delta", {"item_id": "msg_1", "output_index": 1, "content_index": 0, "delta": "Look: "}),
        ("response.output_text.delta", {"item_id": "msg_1", "output_index": 1, "content_index": 0, "delta": XSS}),
        ("response.output_text.annotation.added",
         {"item_id": "msg_1", "output_index": 1, "content_index": 0, "annotation_index": 0,
          "annotation": {"type": "url_citation", "url": "https://example.org/a?q=<b>", "title": XSS,
                         "start_index": 0, "end_index": 6}}),
        ("response.output_item.done",
         {"output_index": 0, "item": {"id": "ws_1", "type": "web_search_call", "status": "completed",
                                      "action": {"type": "search", "query": XSS}}}),
        ("response.image_generation_call.partial_image",
         {"item_id": "ig_1", "output_index": 3, "partial_image_index": 0, "output_format": "png",
          "partial_image_b64": base64.b64encode(b"\x89PNG" + bytes(3068)).decode()}),
        ("response.output_item.done",
         {"output_index": 4, "item": {"id": "rs_1", "type": "reasoning", "summary": [],
                                      "encrypted_content": "gAAAAB" + "x" * 94}}),
        ("response.future_thing", {"note": XSS}),
        ("response.completed", {"response": {"id": "resp_x", "status": "completed",
                                             "usage": {"input_tokens": 5, "output_tokens": 6, "total_tokens": 11}}}),
    ]
    return b"".join(f"event: {name}\ndata: {json.dumps({'type': name, 'sequence_number': n, **data})}\n\n".encode()
                    for n, (name, data) in enumerate(events))


REPLIES["everything"] = fixtures.Fixture(responses_with_everything())

# Each card's refusal, tool results and other lines, as the page shows them.
EXTRAS = """(() => {
  const card = document.querySelector(%s);
  return {text: card.querySelector('.text').textContent, refusal: card.querySelector('.refusal').textContent,
          refusal_shown: card.querySelector('.refusal').offsetParent !== null,
          results: [...card.querySelectorAll('.result')].map((r) => [r.querySelector('.name').textContent,
                                                                       r.querySelector('.content').textContent]),
          extras: [...card.querySelectorAll('.extra')].map((r) => [r.dataset.type, r.querySelector('.kind').textContent,
                                                                     r.querySelector('.detail').textContent]),
          ttft: card.querySelector('.ttft').title,
          images: document.querySelectorAll('img, script[src]').length};
})()"""


def js_excerpt(value, limit: int = 300) -> str:
    """The page's excerpt(): a string as it is, else compact JSON, on one line, cut."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def test_live_page_shows_tool_results_refusals_provider_events_and_the_rest_as_text(browser_world, page_proxy):
    devtools, proc = browser_world["devtools"], page_proxy
    log = EventLog(str(proc.cwd / "page.sock"), since=0)
    session = open_page(devtools, f"http://127.0.0.1:{proc.api_port}/?token={PAGE_TOKEN}")
    wait_for(devtools, session, "document.getElementById('status').textContent === 'live'")
    through_proxy(proc, ROUTED, "/v1/responses", "everything", "everything")
    through_proxy(proc, OTHER, "/v1/chat/completions", "text", "frames")  # the generic sse provider: frames
    events, frames = log.stream_of("everything"), log.stream_of("frames")
    kinds = [e["type"] for e in events]
    for kind in ("tool_result", "refusal.delta", "provider.event", "citation", "media", "signature"):
        assert kind in kinds, kinds  # what the page must show is in the stream
    selectors = {tag: json.dumps(f'[data-stream="{s[0]["stream"]}"]') for tag, s in
                 (("everything", events), ("frames", frames))}
    for selector in selectors.values():
        wait_for(devtools, session, f"document.querySelector({selector})?.className === 'stream ended'")
    card = devtools.evaluate(session, EXTRAS % selectors["everything"])

    # The markup in the texts is text: no element was made of it (the page has no image at all).
    assert card["images"] == 0
    assert card["text"] == f"Look: {XSS}" == text_of(events)
    assert card["refusal"] == f"I can't {XSS}" and card["refusal_shown"]
    # The refusal came first: the time to the first token is the refusal's.
    assert events[1]["type"] == "refusal.delta"
    assert float(card["ttft"].split()[0]) == pytest.approx(events[1]["time"] - events[0]["time"], abs=0.0011)
    result = next(e for e in events if e["type"] == "tool_result")
    assert card["results"] == [["web_search_call", js_excerpt(result["content"])]]
    assert XSS in card["results"][0][1]
    # Every other event, in order, a line each: a label and what it says.
    shown = [e for e in events if e["type"] in ("citation", "media", "signature", "provider.event")]
    assert [row[0] for row in card["extras"]] == [e["type"] for e in shown]
    lines = {row[0]: row[1:] for row in card["extras"]}
    assert lines["citation"] == ["cite", f"{XSS} https://example.org/a?q=<b>"]
    assert lines["media"] == ["image 3.0 KB", "image/png partial_image"]
    assert lines["signature"] == ["signature", "encrypted_content, 100 chars"]
    provider = next(e for e in events if e["type"] == "provider.event")
    assert lines["provider.event"] == ["provider.event", f"{provider['provider_type']} {js_excerpt(provider['data'])}"]
    assert provider["provider_type"] == "response.future_thing" and XSS in lines["provider.event"][1]

    # A generic provider's frames, a line each.
    rows = devtools.evaluate(session, EXTRAS % selectors["frames"])["extras"]
    frame_events = [e for e in frames if e["type"] == "frame"]
    assert frame_events and [row[:2] for row in rows] == [["frame", f"frame {e['event']}"] for e in frame_events]
    for row, e in zip(rows, frame_events, strict=True):
        full = js_excerpt(e["data"], limit=1 << 30)
        assert row[2] == full or (row[2].endswith("…") and full.startswith(row[2][:-1])), (row, full)

    # A type the page does not know (a newer streamtap's) still shows, as its name and
    # fields, as text; so does a decode error, with its reason.
    sid = events[0]["stream"]
    devtools.evaluate(session, f"""[
      {{type: "future.kind", stream: "{sid}", seq: 1000, offset: 1e9, time: {events[-1]['time']}, what: {json.dumps(XSS)}}},
      {{type: "decode.error", stream: "{sid}", seq: 1001, offset: 1e9 + 1, time: {events[-1]['time']},
        message: "openai: bad JSON " + {json.dumps(XSS)}, at_byte: 120}},
      {{type: "toString", stream: "{sid}", seq: 1002, offset: 1e9 + 2, time: {events[-1]['time']}}},
    ].forEach(apply)""")
    card = devtools.evaluate(session, EXTRAS % selectors["everything"])
    assert card["extras"][-3:] == [["future.kind", "future.kind", json.dumps({"what": XSS}, separators=(",", ":"))],
                                   ["decode.error", "decode error", f"at byte 120: openai: bad JSON {XSS}"],
                                   ["toString", "toString", ""]]  # a name an object has is no end
    assert devtools.evaluate(session, f"document.querySelector({selectors['everything']}).className") == "stream ended"
    assert card["images"] == 0
    note = devtools.evaluate(session, f"document.querySelector({selectors['everything']}).querySelector('.note').textContent")
    assert note == "1 decode error (see the events)"

    # Nothing ran: no dialog, no script error, no Content-Security-Policy violation.
    mine = [e for e in devtools.events if e.get("sessionId") == session]
    assert [e for e in mine if e.get("method") == "Page.javascriptDialogOpening"] == []
    assert [e["params"] for e in mine if e.get("method") == "Runtime.exceptionThrown"
            or e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error"] == []
    devtools.call("Target.closeTarget", targetId=devtools.call("Target.getTargetInfo", session)["targetInfo"]["targetId"])

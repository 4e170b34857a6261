"""A real headless Chromium through streamtap: our CA imported into a fresh NSS database
with certutil, no --ignore-certificate-errors. A page on a loopback HTTPS server streams
an SSE answer with fetch(); the subscriber on the API socket receives it exactly, and
an unrouted host shows the browser its own certificate."""

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

from .support import fixtures
from .support.pki import make_pki
from .support.proc import StreamtapProcess
from .support.subscriber import EventLog, text_of
from .support.upstream import Reply, Request, Upstream

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
        body = CHAT.body
        return Reply(chunks=[body[i : i + 11] for i in range(0, len(body), 11)], delay=0.002)
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
    from proxy_core.client import UnixHTTPConnection

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
    pki = make_pki(work / "pki", [ROUTED, UNROUTED])
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
                   "log": EventLog(str(work / "api.sock"), since=0), "log_socket": str(work / "api.sock")}
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
    devtools.call("Network.enable", session)
    devtools.call("Page.enable", session)
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
    from proxy_core.client import get_json

    streams = get_json(browser_world["log_socket"], "/v1/streams")["streams"]
    assert all(s["request"]["host"] != UNROUTED for s in streams)  # not decrypted, not recorded


def test_live_page_shows_text_as_it_streams(browser_world):
    devtools = browser_world["devtools"]
    proc = browser_world["proc"]
    assert proc.api_port
    session = open_page(devtools, f"http://127.0.0.1:{proc.api_port}/")  # loopback: not proxied
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
    assert devtools.evaluate(session, f"{selector}.querySelector('.tag').textContent") == "tag page"

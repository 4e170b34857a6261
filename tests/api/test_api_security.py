"""The TCP API against web pages and local processes: DNS rebinding, cross-origin reads,
cross-site writes, a token by default, and limits on readers, headers and stalls.

Each test sends what the attack sends (a rebinding page's Host, another site's Origin,
a cross-site DELETE, a flood of readers) to a real `streamtap run`."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import socket
import subprocess

import pytest

from proxy_core.api import handlers as api
from proxy_core.api.server import ApiHTTPServer, bind_private_unix_socket
from proxy_core.client import StreamtapClient, StreamtapHTTPError
from proxy_core.hub.hub import Hub
from proxy_core.payloads import TextDelta
from tests.support.proc import STREAMTAP, StreamtapProcess

from ..support.api_http import get_json

pytestmark = pytest.mark.e2e


def request(port: int, method: str, path: str, headers: dict[str, str] | None = None,
            host: str | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest(method, path, skip_host=True)
        conn.putheader("Host", f"127.0.0.1:{port}" if host is None else host)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def tcp_api(tmp_path_factory):
    work = tmp_path_factory.mktemp("security")
    proc = StreamtapProcess(["--certs", str(work / "certs"), "--api-socket", str(work / "run" / "api.sock"),
                             "--api-listen", "127.0.0.1:0",
                             "--set", "streamtap_api_allowed_hosts=tap.internal",
                             "--set", "streamtap_api_allowed_origins=https://dash.example"], cwd=work)
    try:
        token = (work / "run" / "api-token").read_text().strip()
        yield {"proc": proc, "port": proc.api_port, "token": token, "work": work,
               "auth": {"Authorization": f"Bearer {token}"}}
    finally:
        proc.stop()


def test_a_token_is_generated_kept_private_and_never_logged(tcp_api):
    work, proc = tcp_api["work"], tcp_api["proc"]
    token_file = work / "run" / "api-token"
    assert token_file.stat().st_mode & 0o777 == 0o600 and len(tcp_api["token"]) >= 40
    assert tcp_api["token"] not in proc.output
    assert proc.wait_for(f"streamtap API token in {work / 'run' / 'api-token'}: open the page at "
                         f"http://127.0.0.1:{tcp_api['port']}/?token=$(cat ")
    status, headers, _ = request(tcp_api["port"], "GET", "/v1/streams")
    assert status == 401 and headers["www-authenticate"].startswith("Bearer")
    assert request(tcp_api["port"], "GET", "/v1/streams", tcp_api["auth"])[0] == 200
    # The page itself holds nothing; its data needs the token (?token= for EventSource).
    assert request(tcp_api["port"], "GET", "/")[0] == 200
    assert request(tcp_api["port"], "GET", f"/v1/streams?token={tcp_api['token']}")[0] == 200


@pytest.mark.parametrize("host", ["rebind.example:{port}", "rebind.example", "127.0.0.1:1", "", "evil:{port}"])
def test_dns_rebinding_is_refused_whatever_the_path(tcp_api, host):
    port = tcp_api["port"]
    for path in ("/v1/streams", "/v1/events?follow=false", "/", "/proxy.pac", "/healthz"):
        status, _, body = request(port, "GET", path, tcp_api["auth"], host=host.format(port=port))
        assert status == 421, (path, status, body)
        assert b"is not this API's address" in body
    assert b'streamtap_api_refused_total{reason="host"}' in request(port, "GET", "/metrics", tcp_api["auth"])[2]


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST:{port}", "[::1]:{port}",
                                  "tap.internal:{port}"])
def test_loopback_names_and_configured_names_are_served(tcp_api, host):
    port = tcp_api["port"]
    assert request(port, "GET", "/v1/streams", tcp_api["auth"], host=host.format(port=port))[0] == 200
    status, headers, body = request(port, "GET", "/proxy.pac", host=host.format(port=port))
    assert status == 200 and b"FindProxyForURL" in body  # browsers fetch it with no token


def test_cross_origin_reads_are_refused_and_get_no_cors_headers(tcp_api):
    port = tcp_api["port"]
    for method, path in (("GET", "/v1/streams"), ("GET", "/v1/events?follow=false"), ("DELETE", "/v1/streams"),
                         ("OPTIONS", "/v1/streams"), ("GET", "/")):
        for origin in ("http://evil.example", "null", f"http://127.0.0.1:{port + 1}", f"https://127.0.0.1:{port}"):
            status, headers, body = request(port, method, path, {**tcp_api["auth"], "Origin": origin})
            assert status == 403, (method, path, origin, status)
            assert b"may not use this API" in body
            assert not any(h.startswith("access-control-") for h in headers)
    # The page's own origin is served, without CORS headers (none are needed).
    status, headers, _ = request(port, "GET", "/v1/streams", {**tcp_api["auth"], "Origin": f"http://127.0.0.1:{port}"})
    assert status == 200 and "access-control-allow-origin" not in headers


def test_a_configured_origin_gets_cors_and_a_preflight(tcp_api):
    port, origin = tcp_api["port"], "https://dash.example"
    status, headers, _ = request(port, "OPTIONS", "/v1/streams",
                                 {"Origin": origin, "Access-Control-Request-Method": "GET",
                                  "Access-Control-Request-Headers": "authorization"})
    assert status == 204 and headers["access-control-allow-origin"] == origin
    assert "Authorization" in headers["access-control-allow-headers"]
    status, headers, _ = request(port, "GET", "/v1/streams", {**tcp_api["auth"], "Origin": origin})
    assert status == 200 and headers["access-control-allow-origin"] == origin and headers["vary"] == "Origin"


def test_requests_another_site_makes_without_an_origin_are_refused(tcp_api):
    """<img src> or <script src> pointing at the API: no Origin, but Sec-Fetch-Site says it."""
    port = tcp_api["port"]
    for site in ("cross-site", "same-site"):
        fetch = {"Sec-Fetch-Site": site, "Sec-Fetch-Mode": "no-cors"}
        assert request(port, "GET", f"/v1/events?token={tcp_api['token']}", fetch)[0] == 403
        assert request(port, "DELETE", f"/v1/streams?token={tcp_api['token']}", fetch)[0] == 403
    # A link to the live page from elsewhere opens it (the page holds no data).
    assert request(port, "GET", "/", {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"})[0] == 200


def test_without_a_token_state_changes_need_a_header_no_form_can_send(tmp_path):
    proc = StreamtapProcess(["--certs", str(tmp_path / "certs"), "--api-socket", str(tmp_path / "api.sock"),
                             "--api-listen", "127.0.0.1:0", "--api-token", "off"], cwd=tmp_path)
    try:
        port = proc.api_port
        assert port and proc.wait_for("the TCP API has no token (streamtap_api_token=off)")
        assert not (tmp_path / "api-token").exists()
        assert request(port, "GET", "/v1/streams")[0] == 200
        status, _, body = request(port, "DELETE", "/v1/streams", {"Content-Type": "text/plain"})
        assert status == 403 and b"needs the token or an X-Streamtap-Client header" in body
        assert request(port, "DELETE", "/v1/streams", {"X-Streamtap-Client": "curl"})[0] == 200
        # Rebinding and other origins are refused all the same.
        assert request(port, "GET", "/v1/streams", host=f"rebind.example:{port}")[0] == 421
        assert request(port, "GET", "/v1/streams", {"Origin": "http://evil.example"})[0] == 403
    finally:
        proc.stop()


def test_the_client_tail_and_env_find_the_tcp_api_and_its_token(tcp_api):
    work, port = tcp_api["work"], tcp_api["port"]
    env = subprocess.run([STREAMTAP, "env", "--certs", str(work / "certs"), "--api-socket", "run/api.sock",
                          "--api-listen", f"127.0.0.1:{port}"], cwd=work, capture_output=True, text=True, check=True)
    exports = dict(line.removeprefix("export ").split("=", 1) for line in env.stdout.splitlines())
    assert exports["STREAMTAP_API_URL"] == f"http://127.0.0.1:{port}"
    assert exports["STREAMTAP_API_TOKEN_FILE"] == str(work / "run" / "api-token")
    assert tcp_api["token"] not in env.stdout

    async def use() -> None:
        async with StreamtapClient(url=exports["STREAMTAP_API_URL"]) as tap:  # no token at hand
            with pytest.raises(StreamtapHTTPError, match="401: missing or wrong bearer token"):
                await tap.streams()
        old = dict(os.environ)
        os.environ["STREAMTAP_API_TOKEN_FILE"] = exports["STREAMTAP_API_TOKEN_FILE"]
        try:
            async with StreamtapClient(url=exports["STREAMTAP_API_URL"]) as tap:
                assert (await tap.health())["status"] == "ok"
                assert await tap.forget_finished() >= 0  # DELETE, with the token
        finally:
            os.environ.clear()
            os.environ.update(old)

    asyncio.run(use())
    # tail, from the directory whose run/ holds the token file, with no token given.
    tail = subprocess.Popen([STREAMTAP, "tail", "--api-url", f"http://127.0.0.1:{port}", "--since", "0"],
                            cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={k: v for k, v in os.environ.items() if not k.startswith("STREAMTAP_")})
    try:
        assert tail.stderr is not None
        line = tail.stderr.readline()
        assert f"waiting for streams on http://127.0.0.1:{port}" in line, line
        assert tail.poll() is None  # following, not refused
    finally:
        tail.terminate()
        tail.wait(10)


def test_a_flood_of_readers_is_capped(tmp_path):
    sock = tmp_path / "api.sock"
    proc = StreamtapProcess(["--certs", str(tmp_path / "certs"), "--api-socket", str(sock),
                             "--set", "streamtap_api_max_readers=3"], cwd=tmp_path)
    readers = []
    try:
        for _ in range(3):
            s = socket.socket(socket.AF_UNIX)
            s.connect(str(sock))
            s.sendall(b"GET /v1/events?since=now HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
            readers.append(s)
        conn = http.client.HTTPConnection("localhost")
        conn.sock = socket.socket(socket.AF_UNIX)
        conn.sock.connect(str(sock))
        conn.request("GET", "/v1/streams/next?timeout=5")
        resp = conn.getresponse()
        body = json.loads(resp.read())
        assert resp.status == 503 and body["error"] == "too many API readers (3); close one, or raise api.max_readers"
        metrics = get_json_text(str(sock), "/metrics")
        assert 'streamtap_api_refused_total{reason="readers"} 1' in metrics
        readers.pop().close()
        assert get_json(str(sock), "/healthz")["subscribers"] <= 3
    finally:
        for s in readers:
            s.close()
        proc.stop()


def get_json_text(sock: str, path: str) -> str:
    conn = http.client.HTTPConnection("localhost")
    conn.sock = socket.socket(socket.AF_UNIX)
    conn.sock.connect(sock)
    conn.request("GET", path)
    return conn.getresponse().read().decode()


def test_oversized_headers_are_refused(tcp_api):
    status = None
    try:
        status = request(tcp_api["port"], "GET", "/v1/streams", {**tcp_api["auth"], "X-Big": "a" * 20_000})[0]
    except (ConnectionError, http.client.HTTPException):
        pass  # tornado closes the connection: also a refusal
    assert status in (None, 400, 431)


def test_a_reader_that_never_reads_is_closed_after_the_stall_timeout(tmp_path):
    async def scenario() -> None:
        hub = Hub()
        app = api.make_app(hub, max_lag=10_000_000, stall_seconds=0.5)
        server = ApiHTTPServer(app)
        server.add_socket(bind_private_unix_socket(tmp_path / "api.sock"))
        try:
            reader, writer = await asyncio.open_unix_connection(str(tmp_path / "api.sock"))
            writer.write(b"GET /v1/events?since=now HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            await reader.readuntil(b"\r\n\r\n")  # the headers; then it reads no more
            record = hub.open_stream({"host": "api.example"}, {})
            for _ in range(40):  # ~4 MB: more than the socket buffers hold
                for _ in range(100):
                    hub.publish(record.id, TextDelta("x" * 1000))
                await asyncio.sleep(0)
            async with asyncio.timeout(10):
                while hub.metrics.api_refused["stalled"] == 0:
                    await asyncio.sleep(0.05)
            assert hub.subscribers == 0
            writer.close()
        finally:
            server.stop()

    asyncio.run(scenario())

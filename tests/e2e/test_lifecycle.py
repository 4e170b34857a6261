"""Stream lifecycle and delivery guarantees, end to end with real processes: aborts,
stalls, errors, readers that die, lag or reconnect, and shutdown."""

from __future__ import annotations

import asyncio
import json
import random
import socket
import ssl
import subprocess
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from proxy_core.client import StreamNotFound, StreamtapClient
from tests.support import fixtures
from tests.support.pki import make_pki
from tests.support.proc import StreamtapProcess
from tests.support.subscriber import EventLog, text_of
from tests.support.upstream import Reply, Request, Upstream

from ..support.api_http import UnixHTTPConnection, follow_events

pytestmark = pytest.mark.e2e

CHAT = fixtures.openai_chat_text()
LONG = fixtures.openai_chat_text(parts=fixtures.ANSWER_PARTS * 40)  # 240 deltas
STRESS = fixtures.openai_chat_text(parts=[f"{p} #{i}" for i in range(83) for p in fixtures.ANSWER_PARTS][:500])
HOST = "api.openai.com"
URL = f"https://{HOST}/v1/chat/completions"


def pieces(body: bytes, size: int = 8) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)]


def scenario(request: Request) -> Reply:
    name = request.headers.get("x-test-scenario", "fast")
    if name == "fast":
        return Reply(chunks=pieces(CHAT.body, 64))
    if name == "long":
        return Reply(chunks=pieces(LONG.body, 4096))
    if name == "stress":  # one network write per SSE event, as providers flush each token
        return Reply(chunks=[e + b"\n\n" for e in STRESS.body.split(b"\n\n") if e])
    if name == "slow":
        return Reply(chunks=pieces(CHAT.body), delay=0.004)
    if name == "pause":
        return Reply(chunks=pieces(CHAT.body, 40), pause_after=5, pause=1.6)
    if name == "hang":
        return Reply(chunks=pieces(CHAT.body, 40), pause_after=3, pause=30)
    if name == "server-error":
        return Reply(status=500, headers=[("content-type", "application/json")],
                     chunks=[b'{"error":{"message":"The server had an error while processing your request."}}'])
    raise AssertionError(name)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"), [HOST])


@pytest.fixture(scope="module")
def upstream(pki):
    with Upstream(pki, scenario) as up:
        yield up


def start(work: Path, pki, upstream, *extra: str) -> StreamtapProcess:
    return StreamtapProcess(
        ["--certs", str(work / "certs"), "--api-socket", str(work / "api.sock"),
         "--set", f"ssl_verify_upstream_trusted_ca={pki.ca_cert}",
         "--set", f"streamtap_connect_to={HOST}:443=127.0.0.1:{upstream.port}", *extra],
        cwd=work,
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory, pki, upstream):
    work = tmp_path_factory.mktemp("life")
    proc = start(work, pki, upstream, "--set", "streamtap_idle_timeout=0.5",
                 "--set", "streamtap_subscriber_queue=3000")
    try:
        yield {"work": work, "proc": proc, "sock": str(work / "api.sock"),
               "log": EventLog(str(work / "api.sock"), since=0), "ca": work / "certs" / "mitmproxy-ca-cert.pem"}
    finally:
        proc.stop()


def tag() -> str:
    return uuid.uuid4().hex[:10]


def http(world) -> httpx.Client:
    return httpx.Client(proxy=world["proc"].proxy_url, verify=ssl.create_default_context(cafile=str(world["ca"])),
                        timeout=30)


def post(client: httpx.Client, t: str, scenario_name: str = "fast") -> httpx.Response:
    return client.post(URL, content=b"{}", headers={"x-streamtap-tag": t, "x-test-scenario": scenario_name})


def open_tls(world) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", world["proc"].proxy_port))
    raw.sendall(f"CONNECT {HOST}:443 HTTP/1.1\r\nHost: {HOST}:443\r\n\r\n".encode())
    assert raw.recv(4096).startswith(b"HTTP/1.1 200")
    tls = ssl.create_default_context(cafile=str(world["ca"])).wrap_socket(raw, server_hostname=HOST)
    tls.settimeout(10)
    return tls


def test_fifty_aborts_each_followed_by_a_clean_request(world):
    """The failure hand-rolled proxies are known for: the stale tail of an aborted
    answer showing up in the next one. Here it cannot."""
    rng = random.Random(1234)
    with http(world) as client:
        for _ in range(50):
            aborted, fresh = tag(), tag()
            tls = open_tls(world)
            tls.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 2\r\n"
                        f"x-streamtap-tag: {aborted}\r\nx-test-scenario: slow\r\n\r\n{{}}".encode())
            got = b""
            while b"\r\n\r\n" not in got:
                got += tls.recv(4096)
            want = rng.randrange(0, len(CHAT.body) // 2)
            while len(got) < want:
                got += tls.recv(4096)
            tls.close()  # the user pressed Stop, at a random point
            r = post(client, fresh)
            assert r.content == CHAT.body

            first = world["log"].stream_of(aborted)
            second = world["log"].stream_of(fresh)
            assert first[-1]["type"] == "stream.abort" and first[-1]["by"] == "client", first[-1]
            assert CHAT.text.startswith(text_of(first))
            assert text_of(second) == CHAT.text and second[-1]["type"] == "stream.end"
            assert {e["stream"] for e in second} == {second[0]["stream"]} != {first[0]["stream"]}
            assert [e["seq"] for e in second] == list(range(len(second)))


def test_stall_is_reported_once_and_the_stream_goes_on(world):
    t = tag()
    with http(world) as client:
        assert post(client, t, "pause").content == CHAT.body
    events = world["log"].stream_of(t)
    stalls = [e for e in events if e["type"] == "stream.stall"]
    assert len(stalls) == 1 and stalls[0]["idle"] >= 0.5
    assert text_of(events) == CHAT.text and events[-1]["type"] == "stream.end"


def test_upstream_500_is_stream_error(world):
    t = tag()
    with http(world) as client:
        assert post(client, t, "server-error").status_code == 500
    events = world["log"].stream_of(t)
    assert [e["type"] for e in events] == ["stream.start", "stream.error"]
    assert events[-1]["status"] == 500 and "server had an error" in events[-1]["message"]


def test_reader_killed_mid_stream_resumes_without_loss_or_duplicates(world):
    t = tag()
    start_offset = json.loads(UnixHTTPConnection_get(world["sock"], "/healthz"))["last_offset"]
    thread = threading.Thread(target=lambda: post(http(world), t, "slow"))
    thread.start()
    received = []
    for event in follow_events(world["sock"], since=start_offset):
        received.append(event)
        if event["type"] == "text.delta" and event.get("text"):
            break  # killed: the generator's connection is closed here
    resume_from = received[-1]["offset"]
    thread.join()
    for event in follow_events(world["sock"], since=resume_from):
        received.append(event)
        if event["type"] in ("stream.end", "stream.abort") and event["request" if False else "stream"] == received[0]["stream"]:
            break
    uninterrupted = world["log"].stream_of(t)
    mine = [e for e in received if e["stream"] == uninterrupted[0]["stream"]]
    assert mine == uninterrupted
    offsets = [e["offset"] for e in received]
    assert offsets == sorted(set(offsets))


def UnixHTTPConnection_get(sock: str, path: str, method: str = "GET") -> bytes:
    conn = UnixHTTPConnection(sock, timeout=10)
    conn.request(method, path)
    return conn.getresponse().read()


def status_of(sock: str, path: str, method: str = "GET") -> int:
    conn = UnixHTTPConnection(sock, timeout=10)
    conn.request(method, path)
    return conn.getresponse().status


def test_slow_reader_is_cut_off_and_resumes_while_a_fast_one_stays_exact(world, tmp_path):
    sock = world["sock"]
    since = json.loads(UnixHTTPConnection_get(sock, "/healthz"))["last_offset"]
    # The slow reader: connects, then reads nothing while 50 streams run.
    slow = socket.socket(socket.AF_UNIX)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect(sock)
    slow.sendall(f"GET /v1/events?since={since} HTTP/1.1\r\nHost: x\r\nAccept: application/x-ndjson\r\n\r\n".encode())
    # The fast reader: curl, in its own process.
    out = tmp_path / "fast.ndjson"
    fast = subprocess.Popen(["curl", "-sN", "--unix-socket", sock, "-o", str(out),
                             f"http://localhost/v1/events?since={since}&format=ndjson"])
    tags = [tag() for _ in range(50)]
    try:
        with http(world) as client:
            threads = [threading.Thread(target=post, args=(client, t, "long")) for t in tags]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
        ends = world["log"].stream_of(tags[-1]) and [world["log"].stream_of(t)[-1] for t in tags]
        last = max(e["offset"] for e in ends)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            fast_events = [json.loads(line) for line in out.read_bytes().splitlines() if line.strip()]
            if fast_events and fast_events[-1]["offset"] >= last:
                break
            time.sleep(0.05)
    finally:
        fast.terminate()
        fast.wait()
    assert [e["offset"] for e in fast_events] == list(range(since + 1, since + 1 + len(fast_events)))
    assert not [e for e in fast_events if e["type"] in ("cutoff", "gap")]
    for t in tags:  # the fast reader is exact for every one of the 50 streams
        start = [e for e in fast_events if e["type"] == "stream.start" and e["request"]["tag"] == t][0]
        events = [e for e in fast_events if e["stream"] == start["stream"]]
        assert text_of(events) == LONG.text and [e["seq"] for e in events] == list(range(len(events)))

    # Now the slow reader reads: what it got, then a cutoff notice, then the end.
    slow.settimeout(10)
    data = b""
    while chunk := slow.recv(65536):
        data += chunk
        if b'"type":"cutoff"' in data and data.endswith(b"0\r\n\r\n"):
            break
    slow.close()
    body = data.split(b"\r\n\r\n", 1)[1]
    lines = [json.loads(line) for line in _dechunk(body).splitlines() if line.strip()]
    assert lines[-1]["type"] == "cutoff"
    resume_from = lines[-1]["resume_from"]
    assert [e["offset"] for e in lines[:-1]] == list(range(since + 1, resume_from + 1))
    # It resumes where it was cut off: the rest, exactly once.
    rest = []
    for event in follow_events(sock, since=resume_from):
        rest.append(event)
        if event["offset"] == last:
            break
    assert [e["offset"] for e in rest] == list(range(resume_from + 1, last + 1))
    metrics = UnixHTTPConnection_get(sock, "/metrics").decode()
    assert "streamtap_cutoffs_total 1" in metrics


def _dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return out


def test_next_stream_waits_for_exactly_its_own_stream(world):
    async def scenario_():
        async with StreamtapClient(world["sock"]) as tap:
            t = tag()
            after = (await tap.health())["last_offset"]
            waiter = asyncio.create_task(tap.next_stream(host=HOST, tag=t, timeout=20, after=after))
            await asyncio.to_thread(lambda: post(http(world), tag()))  # someone else's stream first
            await asyncio.to_thread(lambda: post(http(world), t))
            found = await waiter
            assert found["request"]["tag"] == t
            message = await tap.message(found["id"])
            assert message["text"] == CHAT.text and message["finish_reason"] == "stop"
            with pytest.raises(TimeoutError):
                await tap.next_stream(tag="never-sent", timeout=0.3)
            with pytest.raises(StreamNotFound):
                await tap.message("no-such-stream")

    asyncio.run(scenario_())


def test_forgetting_streams_never_touches_an_active_one(world):
    t_active, t_done = tag(), tag()
    with http(world) as client:
        post(client, t_done)
    done_id = world["log"].stream_of(t_done)[0]["stream"]
    tls = open_tls(world)
    request = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 2\r\n"
               f"x-streamtap-tag: {t_active}\r\nx-test-scenario: hang\r\n\r\n{{}}").encode()
    active = asyncio.run(_next(world["sock"], t_active, lambda: tls.sendall(request)))
    assert status_of(world["sock"], f"/v1/streams/{active['id']}", "DELETE") == 409
    forgotten = json.loads(UnixHTTPConnection_get(world["sock"], "/v1/streams", "DELETE"))["forgotten"]
    assert forgotten >= 1
    assert status_of(world["sock"], f"/v1/streams/{done_id}") == 404
    assert status_of(world["sock"], f"/v1/streams/{active['id']}") == 200
    tls.close()
    ended = world["log"].stream_of(t_active)
    assert ended[-1]["type"] == "stream.abort"
    assert status_of(world["sock"], f"/v1/streams/{active['id']}", "DELETE") == 200
    assert status_of(world["sock"], f"/v1/streams/{active['id']}", "DELETE") == 404


async def _next(sock: str, t: str, trigger) -> dict:
    """The stream tagged `t`, which `trigger` starts."""
    async with StreamtapClient(sock) as tap:
        after = (await tap.health())["last_offset"]
        await asyncio.to_thread(trigger)
        return await tap.next_stream(tag=t, timeout=10, after=after)


def test_gap_when_the_ring_has_moved_on(tmp_path, pki, upstream):
    proc = start(tmp_path, pki, upstream, "--set", "streamtap_buffer_events=5")
    try:
        ca = str(tmp_path / "certs" / "mitmproxy-ca-cert.pem")
        with httpx.Client(proxy=proc.proxy_url, verify=ssl.create_default_context(cafile=ca)) as client:
            post(client, tag())
        events = list(follow_events(str(tmp_path / "api.sock"), since=0, follow="false"))
        assert events[0]["type"] == "gap" and events[0]["from"] == 1
        assert [e["offset"] for e in events[1:]] == list(range(events[0]["to"] + 1, events[0]["to"] + 6))
    finally:
        proc.stop()


def test_client_reconnects_across_a_server_restart(tmp_path, pki, upstream):
    sock = str(tmp_path / "api.sock")
    ca = str(tmp_path / "certs" / "mitmproxy-ca-cert.pem")

    def request(proc, t):
        with httpx.Client(proxy=proc.proxy_url, verify=ssl.create_default_context(cafile=ca)) as client:
            assert post(client, t).content == CHAT.body

    async def scenario_():
        first = start(tmp_path, pki, upstream)
        seen: list[dict] = []
        t1, t2 = tag(), tag()

        async def follow():
            async with StreamtapClient(sock, reconnect_timeout=20) as tap:
                async for ev in tap.events(since=0):
                    seen.append(ev)
                    if ev["type"] == "stream.end" and ev["stream"] == stream_of(t2):
                        return

        def stream_of(t):
            starts = [e for e in seen if e["type"] == "stream.start" and e["request"]["tag"] == t]
            return starts[0]["stream"] if starts else None

        follower = asyncio.create_task(follow())
        await asyncio.to_thread(request, first, t1)
        deadline = asyncio.get_running_loop().time() + 10
        while not any(e["type"] == "stream.end" and e["stream"] == stream_of(t1) for e in seen):
            assert asyncio.get_running_loop().time() < deadline, "the follower never saw the first stream end"
            await asyncio.sleep(0.02)  # polls a condition; the time is not what the test relies on
        await asyncio.to_thread(first.stop)
        second = await asyncio.to_thread(start, tmp_path, pki, upstream)
        try:
            await asyncio.to_thread(request, second, t2)
            await asyncio.wait_for(follower, 20)
        finally:
            await asyncio.to_thread(second.stop)
        kinds = [e["type"] for e in seen]
        assert "restart" in kinds
        for t in (t1, t2):
            sid = stream_of(t)
            mine = [e for e in seen if e["stream"] == sid]
            assert text_of(mine) == CHAT.text and [e["seq"] for e in mine] == list(range(len(mine)))

    asyncio.run(scenario_())


def test_shutdown_aborts_active_streams_flushes_readers_and_removes_the_socket(tmp_path, pki, upstream):
    proc = start(tmp_path, pki, upstream)
    sock = tmp_path / "api.sock"
    t = tag()
    ca = str(tmp_path / "certs" / "mitmproxy-ca-cert.pem")
    raw = socket.create_connection(("127.0.0.1", proc.proxy_port))
    raw.sendall(f"CONNECT {HOST}:443 HTTP/1.1\r\nHost: {HOST}:443\r\n\r\n".encode())
    raw.recv(4096)
    tls = ssl.create_default_context(cafile=ca).wrap_socket(raw, server_hostname=HOST)
    request = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 2\r\n"
               f"x-streamtap-tag: {t}\r\nx-test-scenario: hang\r\n\r\n{{}}").encode()
    stream = asyncio.run(_next(str(sock), t, lambda: tls.sendall(request)))
    reader = follow_events(str(sock), since=0)
    events = []
    for ev in reader:
        events.append(ev)
        if ev["offset"] >= stream["first_offset"]:
            break
    assert proc.stop() == 0
    events += list(reader)  # the response ends: the reader is not left hanging
    mine = [e for e in events if e["stream"] == stream["id"]]
    assert mine[-1]["type"] == "stream.abort" and mine[-1]["by"] == "proxy"
    assert not sock.exists()
    tls.close()


def test_an_offset_from_an_earlier_run_restarts_the_reader(world):
    newest = json.loads(UnixHTTPConnection_get(world["sock"], "/healthz"))["last_offset"]
    events = list(follow_events(world["sock"], since=newest + 1000, follow="false"))
    assert events[0]["type"] == "restart" and events[0]["last_offset_seen"] == newest + 1000
    assert [e["offset"] for e in events[1:]] == list(range(1, newest + 1))


def test_sixteen_concurrent_long_streams_replay_complete_through_both_endpoints(world):
    """16 clients at once, 500 deltas each, one write per event; afterwards every stream
    replays whole, and closes, through /v1/streams/{id}/events and /v1/events?stream=."""
    tags = [tag() for _ in range(16)]
    bodies: dict[str, bytes] = {}

    def client(t: str) -> None:
        with http(world) as c:
            bodies[t] = post(c, t, "stress").content

    threads = [threading.Thread(target=client, args=(t,)) for t in tags]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert all(bodies.get(t) == STRESS.body for t in tags)  # every client got its bytes intact
    for t in tags:
        live = world["log"].stream_of(t)
        sid = live[0]["stream"]
        assert text_of(live) == STRESS.text
        for path in (f"/v1/streams/{sid}/events", f"/v1/events?stream={sid}&since=0&follow=0"):
            replayed = [json.loads(line) for line in _ndjson(world["sock"], path)]
            assert replayed == live, path  # every event, once, in order, ending with the terminal one
            assert replayed[-1]["type"] == "stream.end"


def _ndjson(sock: str, path: str) -> list[bytes]:
    """The whole NDJSON body of GET `path`: returns only once the server ends it."""
    conn = UnixHTTPConnection(sock, timeout=20)
    try:
        conn.request("GET", path, headers={"Accept": "application/x-ndjson"})
        resp = conn.getresponse()
        assert resp.status == 200
        return [line for line in resp.read().split(b"\n") if line]
    finally:
        conn.close()

"""Sinks against real brokers on loopback: every (stream, seq) exactly once after the
broker's dedup, in order per stream, also across a broker restart in the middle of a run."""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import time
from pathlib import Path

import pytest

from tests.support import fixtures
from tests.support.brokers import NatsServer, RedisServer
from tests.support.pki import make_pki
from tests.support.proc import StreamtapProcess
from tests.support.upstream import Reply, Upstream

from ..support.api_http import get_json

pytestmark = pytest.mark.e2e

HOST = "api.openai.com"
CHAT = fixtures.openai_chat_text()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"), [HOST])


@pytest.fixture(scope="module")
def upstream(pki):
    with Upstream(pki, lambda r: Reply(chunks=[CHAT.body[i:i + 48] for i in range(0, len(CHAT.body), 48)])) as up:
        yield up


def run_streamtap(work: Path, pki, upstream, sink: str) -> StreamtapProcess:
    return StreamtapProcess(
        ["--certs", str(work / "certs"), "--api-socket", str(work / "api.sock"), "--sink", sink,
         "--set", f"streamtap_sink_spool_dir={work / 'spool'}",
         "--set", f"ssl_verify_upstream_trusted_ca={pki.ca_cert}",
         "--set", f"streamtap_connect_to={HOST}:443=127.0.0.1:{upstream.port}"],
        cwd=work,
    )


def answers(proc: StreamtapProcess, work: Path, n: int, parallel: int = 10) -> None:
    """`n` chat completions through the proxy, `parallel` at a time."""
    import httpx

    ctx = ssl.create_default_context(cafile=str(work / "certs" / "mitmproxy-ca-cert.pem"))

    def one() -> None:
        with httpx.Client(proxy=proc.proxy_url, verify=ctx, timeout=30) as client:
            r = client.post(f"https://{HOST}/v1/chat/completions", json={"stream": True})
            assert r.content == CHAT.body

    left = list(range(n))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if not left:
                    return
                left.pop()
            one()

    threads = [threading.Thread(target=worker) for _ in range(parallel)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)


def api_events(sock: Path) -> dict[tuple[str, str, int], str]:
    """(instance, stream, seq) -> type of every event the hub holds."""
    instance = get_json(str(sock), "/healthz")["instance"]
    out = {}
    for s in get_json(str(sock), "/v1/streams")["streams"]:
        for line in _events_of(sock, s["id"]):
            out[(instance, line["stream"], line["seq"])] = line["type"]
    return out


def _events_of(sock: Path, stream: str) -> list[dict]:
    from ..support.api_http import UnixHTTPConnection

    conn = UnixHTTPConnection(str(sock), 10)
    conn.request("GET", f"/v1/streams/{stream}/events?follow=false&format=ndjson")
    body = conn.getresponse().read()
    conn.close()
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def check_exactly_once(received: list[tuple[str, str, int, str]], expected: dict[tuple[str, str, int], str]) -> None:
    """`received`: (instance, stream, seq, type) in arrival order, after dedup."""
    keys = [(instance, stream, seq) for instance, stream, seq, _ in received]
    assert len(keys) == len(set(keys)), "an event arrived twice after dedup"
    assert {k: t for (*_, t), k in zip(received, keys, strict=True)} == expected
    last: dict[tuple[str, str], int] = {}
    for instance, stream, seq in keys:
        assert seq > last.get((instance, stream), -1), f"stream {stream}: seq {seq} after {last.get((instance, stream))}"
        last[(instance, stream)] = seq


def wait_until(predicate, timeout: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


# NATS JetStream ------------------------------------------------------------------------

async def nats_messages(url: str, stream_name: str = "ST") -> list[tuple[str, str, int, str]]:
    import nats

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream_name)
        sub = await js.pull_subscribe(">", durable=None, stream=stream_name)
        out = []
        remaining = info.state.messages
        while remaining > 0:
            msgs = await sub.fetch(min(remaining, 500), timeout=5)
            for m in msgs:
                event = json.loads(m.data)
                out.append((m.headers["Streamtap-Instance"], event["stream"], event["seq"], event["type"]))
                await m.ack()
            remaining -= len(msgs)
        return out
    finally:
        await nc.close()


def test_three_instances_into_nats_every_event_once_in_order_across_a_restart(tmp_path, pki, upstream):
    """Three streamtap processes, 20 answers each at once, into one JetStream; the broker
    is stopped mid-run and restarted: every (instance, stream, seq) arrives exactly once,
    in seq order per stream, and `streamtap tail --from` follows the whole fleet."""
    with NatsServer(tmp_path / "nats") as nats_server:
        works = [tmp_path / f"instance{i}" for i in range(3)]
        for w in works:
            w.mkdir()
        procs = [run_streamtap(w, pki, upstream, f"{nats_server.url}/st") for w in works]
        try:
            def each(n: int) -> None:
                threads = [threading.Thread(target=answers, args=(p, w, n, 5)) for p, w in zip(procs, works, strict=True)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(90)

            each(20)
            for w in works:  # the restart comes after each sink has sent, not before it connects
                wait_until(lambda w=w: _sent(w) > 0, 30, "the sink to connect")
            nats_server.stop()  # the broker goes away mid-run ...
            each(5)  # ... the proxies' clients do not notice ...
            assert all(p.wait_for("spooling until it is back") for p in procs)  # the sinks did
            nats_server.start()  # ... and it comes back on the same port and store
            each(5)
            expected: dict = {}
            for w in works:
                expected.update(api_events(w / "api.sock"))
            assert len({(i, s) for i, s, _ in expected}) == 90
            for w in works:
                mine = sum(1 for k in expected if k[0] == get_json(str(w / "api.sock"), "/healthz")["instance"])
                wait_until(lambda w=w, mine=mine: _sent(w) >= mine, 30, "the sink to catch up")
            received = asyncio.run(nats_messages(nats_server.url))
            check_exactly_once(received, expected)
            followed = follow_fleet(f"{nats_server.url}/st", len(expected))
            check_exactly_once(followed, expected)
        finally:
            for p in procs:
                p.stop()


def follow_fleet(url: str, count: int) -> list[tuple[str, str, int, str]]:
    """`streamtap tail --from URL --json --since 0`, read until `count` events came."""
    import subprocess

    from tests.support.proc import STREAMTAP

    tail = subprocess.Popen([STREAMTAP, "tail", "--from", url, "--json", "--since", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = []
    try:
        assert tail.stdout is not None
        timer = threading.Timer(60, tail.kill)  # a hang fails the test instead of stalling it
        timer.start()
        for line in tail.stdout:
            event = json.loads(line)
            out.append((event["instance"], event["stream"], event["seq"], event["type"]))
            if len(out) == count:
                break
        timer.cancel()
    finally:
        tail.terminate()
        tail.wait(10)
    return out


def _sent(work: Path) -> int:
    metrics = _metrics(work / "api.sock")
    return sum(int(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("streamtap_sink_sent_total{"))


def _metrics(sock: Path) -> str:
    from ..support.api_http import UnixHTTPConnection

    conn = UnixHTTPConnection(str(sock), 10)
    conn.request("GET", "/metrics")
    body = conn.getresponse().read().decode()
    conn.close()
    return body


# Redis Streams ---------------------------------------------------------------------------

def redis_messages(url: str, key: str) -> list[tuple[str, str, int, str]]:
    """What a consumer sees, deduplicated by (instance, stream, seq) as docs/sinks.md says."""
    import redis

    client = redis.Redis.from_url(url)
    seen, out = set(), []
    for _, fields in client.xrange(key):
        ident = (fields[b"instance"], fields[b"stream"], fields[b"seq"])
        if ident in seen:
            continue
        seen.add(ident)
        event = json.loads(fields[b"event"])
        out.append((fields[b"instance"].decode(), event["stream"], event["seq"], event["type"]))
    client.close()
    return out


def test_redis_gets_every_event_once_in_order_across_a_restart(tmp_path, pki, upstream):
    with RedisServer(tmp_path / "redis") as redis_server:
        proc = run_streamtap(tmp_path, pki, upstream, f"{redis_server.url}?stream=tap")
        try:
            answers(proc, tmp_path, 20)
            wait_until(lambda: _sent(tmp_path) > 0, 30, "the sink to connect")  # then the restart
            redis_server.stop()
            answers(proc, tmp_path, 10)
            assert proc.wait_for("spooling until it is back"), proc.output
            redis_server.start()
            answers(proc, tmp_path, 10)
            expected = api_events(tmp_path / "api.sock")
            wait_until(lambda: _sent(tmp_path) >= len(expected), 30, "the sink to catch up")
            check_exactly_once(redis_messages(redis_server.url, "tap"), expected)
        finally:
            proc.stop()


def test_a_bad_sink_url_is_one_line(tmp_path):
    import subprocess

    from tests.support.proc import STREAMTAP

    result = subprocess.run([STREAMTAP, "run", "--listen", "127.0.0.1:0", "--certs", str(tmp_path / "c"),
                             "--sink", "kafka://127.0.0.1:9092/x"], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "--sink: 'kafka://127.0.0.1:9092/x': unknown sink" in result.stderr


def test_a_full_spool_records_a_gap_and_the_sink_goes_on(tmp_path):
    """The broker is down and the spool holds ~3 KB: what does not fit is counted and
    sent as one gap message in its place; the rest arrives in order once the broker is up."""
    from proxy_core.hub.hub import Hub
    from proxy_core.payloads import TextDelta
    from proxy_core.sinks.nats import NatsBroker
    from proxy_core.sinks.runner import SinkRunner

    nats_server = NatsServer(tmp_path / "nats")  # not started yet: the broker is down

    async def scenario() -> tuple[int, list]:
        hub = Hub()
        runner = SinkRunner(NatsBroker(f"{nats_server.url}/st"), tmp_path / "spool", 3000, hub.instance, hub.metrics)
        runner.start()
        hub.sinks.append(runner.put)
        record = hub.open_stream({"host": "h", "provider": "openai"}, {})
        for i in range(100):
            hub.publish(record.id, TextDelta(f"{i:03d} " * 10))
        async with asyncio.timeout(10):
            while runner.gaps == 0:
                await asyncio.sleep(0.05)
        await asyncio.to_thread(nats_server.start)
        async with asyncio.timeout(20):
            while runner.spool.size > 0:
                await asyncio.sleep(0.05)
        await runner.stop()
        return runner.gaps, await nats_messages_with_gaps(nats_server.url)

    try:
        gaps, received = asyncio.run(scenario())
    finally:
        nats_server.stop()
    assert 0 < gaps < 101
    events = [m for m in received if m["type"] != "gap"]
    gap = [m for m in received if m["type"] == "gap"]
    assert len(gap) == 1 and gap[0]["dropped"] == gaps
    assert len(events) + gaps == 101  # stream.start and 100 deltas: each arrived or is counted
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)


async def nats_messages_with_gaps(url: str) -> list[dict]:
    import nats

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info("ST")
        sub = await js.pull_subscribe(">", stream="ST")
        msgs = await sub.fetch(info.state.messages, timeout=5)
        return [json.loads(m.data) for m in msgs]
    finally:
        await nc.close()


def test_a_broker_dying_while_a_batch_awaits_its_acks_fails_the_batch_at_once(tmp_path):
    """nats-py leaves a dead connection's publish acks pending: the sink fails them when the
    connection closes, instead of waiting ACK_TIMEOUT (10 s) before it retries."""
    import os
    import signal

    from proxy_core.sinks.nats import ACK_TIMEOUT, NatsBroker
    from proxy_core.sinks.runner import SinkMessage

    messages = [SinkMessage("i", "s", n, "openai", "text.delta", b'{"n":%d}' % n) for n in range(500)]

    async def scenario(server: NatsServer) -> float:
        broker = NatsBroker(f"{server.url}/st")
        await broker.connect()
        await broker.send(messages[:10])
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGSTOP)  # takes the next batch but never confirms it ...

        async def kill() -> float:
            await asyncio.sleep(0.3)
            assert server.proc is not None
            server.proc.kill()  # ... and dies while the sink waits for the acks
            await asyncio.to_thread(server.proc.wait)
            return time.monotonic()

        killed = asyncio.create_task(kill())
        with pytest.raises(ConnectionError):
            await broker.send(messages[10:])
        failed = time.monotonic()
        await broker.close()
        return failed - await killed

    server = NatsServer(tmp_path / "nats").start()
    try:
        took = asyncio.run(scenario(server))
    finally:
        server.stop()
    assert took < min(2.0, ACK_TIMEOUT / 2)


def test_redis_without_scripts_falls_back_to_a_pipeline_of_xadds(tmp_path):
    """A batch is one EVALSHA whose script XADDs each event; where the server refuses
    scripts (an ACL here), the same entries go in as a pipeline of XADDs."""
    import redis

    from proxy_core.sinks.redis import RedisBroker
    from proxy_core.sinks.runner import SinkMessage

    def batch(instance: str) -> list[SinkMessage]:
        return [SinkMessage(instance, "s", 0, "openai", "stream.start", b'{"a":"\\u0000\xc3\xa9"}'),
                SinkMessage(instance, None, 1, "", "gap", b'{"type":"gap","dropped":2}'),
                SinkMessage(instance, "s", 1, "openai", "text.delta", b'{"text":"\\t x"}')]

    async def send(url: str, instance: str) -> bool:
        broker = RedisBroker(f"{url}?stream=tap")
        await broker.connect()
        await broker.send(batch(instance))
        scripted = broker._script is not None
        await broker.close()
        return scripted

    with RedisServer(tmp_path / "redis") as server:
        assert asyncio.run(send(server.url, "scripted"))
        client = redis.Redis.from_url(server.url)
        client.execute_command("ACL", "SETUSER", "default", "-@scripting")
        assert not asyncio.run(send(server.url, "piped"))
        entries = [fields for _, fields in client.xrange("tap")]
        client.close()
    expected = [{"instance": i, "stream": m.stream or "", "seq": str(m.seq), "provider": m.provider, "type": m.type,
                 "event": m.event} for i in ("scripted", "piped") for m in batch(i)]
    assert [{k.decode(): (v if k == b"event" else v.decode()) for k, v in e.items()} for e in entries] == expected


def test_a_jetstream_refusal_fails_the_batch_at_once(tmp_path):
    """The acks are JetStream's replies: a subject no stream takes (the stream was deleted)
    fails the batch with that reason, not after ACK_TIMEOUT."""
    from proxy_core.sinks.nats import ACK_TIMEOUT, NatsBroker
    from proxy_core.sinks.runner import SinkMessage

    async def scenario(url: str) -> float:
        import nats

        broker = NatsBroker(f"{url}/st")
        await broker.connect()
        await broker.send([SinkMessage("i", "s", 0, "openai", "text.delta", b"{}")])
        nc = await nats.connect(url)
        await nc.jetstream().delete_stream("ST")
        await nc.close()
        started = time.monotonic()
        with pytest.raises(ConnectionError, match="no JetStream stream"):
            await broker.send([SinkMessage("i", "s", n, "openai", "text.delta", b"{}") for n in range(1, 20)])
        took = time.monotonic() - started
        await broker.close()
        return took

    with NatsServer(tmp_path / "nats") as server:
        assert asyncio.run(scenario(server.url)) < min(2.0, ACK_TIMEOUT / 2)

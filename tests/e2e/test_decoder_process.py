"""The decoder process end to end: a real `streamtap run` with
`streamtap_decoder_process=on`, a loopback HTTPS upstream, real clients (httpx, the
openai SDK) through the proxy, and readers on the API, which that process serves. The
rest of the suite runs this way too in CI (STREAMTAP_TEST_DECODER_PROCESS=on)."""

from __future__ import annotations

import hashlib
import os
import signal
import ssl
import threading
import uuid

import httpx
import openai
import pytest

from proxy_core.mitm import decoder_process
from tests.support import fixtures
from tests.support.pki import make_pki
from tests.support.proc import loopback_streamtap
from tests.support.subscriber import EventLog, text_of
from tests.support.upstream import Reply, Request, Upstream

from ..support.api_http import get_json

pytestmark = pytest.mark.e2e

HOST = "api.openai.com"
CHAT = fixtures.openai_chat_text()
LONG = fixtures.openai_chat_text(parts=fixtures.ANSWER_PARTS * 40)  # 280 deltas, 20 ms apart


# An answer bigger than the proxy's backlog for the decoder process (MAX_BACKLOG, 64 MiB).
BIG_EVENT = b'data: {"choices":[{"index":0,"delta":{"content":"' + b"x" * 16_000 + b'"}}]}\n\n'
BIG_COUNT = (decoder_process.MAX_BACKLOG * 3 // 2) // len(BIG_EVENT)


def scenario(request: Request) -> Reply:
    if request.headers.get("x-test-scenario") == "big":
        return Reply(chunks=[BIG_EVENT] * BIG_COUNT + [b"data: [DONE]\n\n"])
    if request.headers.get("x-test-scenario") == "long":
        return Reply(chunks=[e + b"\n\n" for e in LONG.body.split(b"\n\n") if e], delay=0.02)
    body = CHAT.body
    return Reply(chunks=[body[i : i + 5] for i in range(0, len(body), 5)], delay=0.0005)


@pytest.fixture
def world(tmp_path):
    pki = make_pki(tmp_path / "pki", [HOST])
    with Upstream(pki, scenario) as upstream:
        proc = loopback_streamtap(tmp_path, pki.ca_cert, {HOST: upstream.port},
                                  "--set", "streamtap_decoder_process=on")
        try:
            yield {"proc": proc, "sock": str(tmp_path / "run" / "api.sock"),
                   "ca": str(tmp_path / "certs" / "mitmproxy-ca-cert.pem")}
        finally:
            proc.stop()
            print(proc.output)


def client(world) -> httpx.Client:
    return httpx.Client(proxy=world["proc"].proxy_url, verify=ssl.create_default_context(cafile=world["ca"]))


def post(world, tag: str, scenario_name: str = "") -> bytes:
    with client(world) as http:
        r = http.post(f"https://{HOST}/v1/chat/completions", json={"model": "gpt-test", "stream": True},
                      headers={"authorization": "Bearer sk-secret", "x-streamtap-tag": tag,
                               "x-test-scenario": scenario_name})
        return r.content


def post_cut_short(world, tag: str) -> None:
    """A long answer that the test cuts by stopping the proxy."""
    try:
        post(world, tag, "long")
    except httpx.HTTPError:
        pass  # the proxy went away mid-answer: that is the test


def test_it_decodes_serves_and_logs_through_the_proxy(world):
    proc, sock = world["proc"], world["sock"]
    health = get_json(sock, "/healthz")
    assert health["status"] == "ok" and health["process"] != proc.proc.pid  # the hub is elsewhere
    assert health["checks"]["proxy_listening"] == [f"127.0.0.1:{proc.proxy_port}"]
    assert proc.wait_for(f"streamtap: decoding in process {health['process']}")
    assert "streamtap API listening at unix:" in proc.output  # its log, written by the proxy
    log = EventLog(sock, since=0)
    tag = uuid.uuid4().hex[:8]
    assert post(world, tag) == CHAT.body  # the client's bytes, unchanged
    events = log.stream_of(tag)
    assert text_of(events) == CHAT.text and [e["seq"] for e in events] == list(range(len(events)))
    assert events[-1]["type"] == "stream.end" and events[-1]["finish_reason"] == "stop"
    assert events[0]["request"]["headers"]["authorization"] == "[redacted]"
    record = get_json(sock, f"/v1/streams/{events[0]['stream']}")
    assert record["message"]["text"] == CHAT.text

    # The official SDK, and several clients at once: every answer whole, on its own stream.
    sdk = openai.OpenAI(api_key="sk-secret", base_url=f"https://{HOST}/v1",
                        http_client=client(world), default_headers={"x-streamtap-tag": "sdk"})
    text = "".join(c.choices[0].delta.content or "" for c in
                   sdk.chat.completions.create(model="gpt-test", messages=[], stream=True) if c.choices)
    assert text == CHAT.text == text_of(log.stream_of("sdk"))
    tags = [f"many-{n}" for n in range(8)]
    threads = [threading.Thread(target=post, args=(world, t)) for t in tags]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for t in tags:
        assert text_of(log.stream_of(t)) == CHAT.text


def test_a_stopping_proxy_aborts_what_is_in_flight_for_its_readers(world):
    log = EventLog(world["sock"], since=0)
    threading.Thread(target=post_cut_short, args=(world, "long"), daemon=True).start()
    _wait_for_text(log, "long")
    assert world["proc"].stop(signal.SIGTERM) == 0
    events = log.stream_of("long")
    assert events[-1]["type"] == "stream.abort" and events[-1]["message"] == "streamtap shut down"
    assert [e["seq"] for e in events] == list(range(len(events)))


def test_a_killed_proxy_leaves_its_streams_aborted_not_dangling(world):
    log = EventLog(world["sock"], since=0)
    threading.Thread(target=post_cut_short, args=(world, "long"), daemon=True).start()
    _wait_for_text(log, "long")
    os.kill(world["proc"].proc.pid, signal.SIGKILL)
    events = log.stream_of("long")
    end = events[-1]
    assert end["type"] == "stream.abort" and end["by"] == "proxy" and end["message"] == "the proxy stopped"
    assert text_of(events) and LONG.text.startswith(text_of(events))


def test_a_decoder_process_that_dies_stops_the_proxy_saying_why(world):
    proc = world["proc"]
    decoder = get_json(world["sock"], "/healthz")["process"]
    os.kill(decoder, signal.SIGKILL)
    assert proc.proc.wait(15) == 1
    assert proc.wait_for("the decoder process stopped (killed by signal 9); stopping", 5), proc.output


def _wait_for_text(log: EventLog, tag: str) -> None:
    """Until the tagged stream has decoded some text (it lasts seconds more)."""
    def some_text(events: list[dict]) -> bool:
        ids = {e["stream"] for e in events if e["type"] == "stream.start" and e["request"]["tag"] == tag}
        return any(e["type"] == "text.delta" and e["stream"] in ids for e in events)

    log.wait_for(some_text, f"text on the stream tagged {tag!r}")


def test_a_stopped_decoder_process_never_holds_the_client_up(world):
    """SIGSTOP the decoder process and stream 96 MiB through: the client gets every byte
    at once; what the backlog could not hold is one decode.error, and the stream ends."""
    sock = world["sock"]
    decoder = get_json(sock, "/healthz")["process"]
    os.kill(decoder, signal.SIGSTOP)
    try:
        with client(world) as http, http.stream(
                "POST", f"https://{HOST}/v1/chat/completions", json={"stream": True},
                headers={"x-streamtap-tag": "big", "x-test-scenario": "big"}, timeout=60) as r:
            digest, size = hashlib.sha256(), 0
            for part in r.iter_raw():
                digest.update(part)
                size += len(part)
    finally:
        os.kill(decoder, signal.SIGCONT)
    body = BIG_EVENT * BIG_COUNT + b"data: [DONE]\n\n"
    assert size == len(body) and digest.hexdigest() == hashlib.sha256(body).hexdigest()
    events = EventLog(sock, since=0).stream_of("big")
    errors = [e for e in events if e["type"] == "decode.error"]
    assert len(errors) == 1 and "bytes of this body were not decoded" in errors[0]["message"]
    skipped = int(errors[0]["message"].split(": ")[-1].split(" ")[0])
    assert skipped >= len(body) - decoder_process.MAX_BACKLOG - (8 << 20)  # at most the backlog and socket buffers sent
    assert events[-1]["type"] == "stream.end" and [e["seq"] for e in events] == list(range(len(events)))
    assert 0 < len(text_of(events)) < BIG_COUNT * 16_000  # what was sent before the skip, decoded

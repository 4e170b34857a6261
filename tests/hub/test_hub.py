from __future__ import annotations

import asyncio
import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy_core.hub.envelope import Envelope, dumps, envelope_dict
from proxy_core.hub.hub import Hub, Ring
from proxy_core.payloads import ReasoningDelta, StreamEnd, TextDelta, Usage, payload_from_dict


def end() -> StreamEnd:
    return StreamEnd(200, "stop", {}, "")


def test_offsets_and_seqs_have_no_holes():
    hub = Hub()
    a = hub.open_stream({"host": "a"}, {})
    b = hub.open_stream({"host": "b"}, {})
    hub.publish(a.id, TextDelta("x"))
    hub.publish(b.id, TextDelta("y"))
    hub.publish(a.id, end())
    _, events = hub.read(0)
    assert [e.offset for e in events] == [1, 2, 3, 4, 5]
    assert [e.seq for e in events if e.stream == a.id] == [0, 1, 2]
    assert [e.seq for e in events if e.stream == b.id] == [0, 1]


def test_nothing_after_the_terminal_event():
    hub = Hub()
    s = hub.open_stream({}, {})
    hub.publish(s.id, end())
    assert hub.publish(s.id, TextDelta("late")) is None
    assert hub.streams[s.id].state == "ended"
    assert hub.last_offset == 2


def test_reassembled_message():
    hub = Hub()
    s = hub.open_stream({}, {})
    for t in ("Hel", "lo"):
        hub.publish(s.id, TextDelta(t))
    hub.publish(s.id, Usage(1, 2, 3))
    hub.publish(s.id, end())
    assert hub.streams[s.id].message() == {
        "text": "Hello", "reasoning": "", "refusal": "", "tool_calls": [], "tool_results": [], "citations": [],
        "media": [], "extra": [],
        "usage": {"input_tokens": 1, "output_tokens": 2, "total_tokens": 3}, "finish_reason": "stop", "truncated": False,
    }


def test_ring_reports_the_gap_it_dropped():
    hub = Hub(capacity=3)
    s = hub.open_stream({}, {})
    for i in range(5):
        hub.publish(s.id, TextDelta(str(i)))
    gap, events = hub.read(0)
    assert gap == (1, 3)
    assert [e.offset for e in events] == [4, 5, 6]
    assert hub.read(3) == (None, events)
    assert hub.read(6) == (None, [])


def test_ring_resize_keeps_the_newest():
    ring = Ring(4)
    hub = Hub(capacity=4)
    s = hub.open_stream({}, {})
    for i in range(6):
        hub.publish(s.id, TextDelta(str(i)))
    hub.set_capacity(2)
    gap, events = hub.read(0)
    assert gap == (1, 5) and [e.offset for e in events] == [6, 7]
    with pytest.raises(ValueError):
        Ring(0)
    assert ring.read(0, 10) == []


def test_forget_finished_keeps_active_streams():
    hub = Hub()
    done, live = hub.open_stream({}, {}), hub.open_stream({}, {})
    hub.publish(done.id, end())
    assert hub.forget_finished() == 1
    assert list(hub.streams) == [live.id]


def test_finished_streams_are_trimmed_to_keep_streams():
    hub = Hub(keep_streams=2)
    ids = []
    for _ in range(5):
        s = hub.open_stream({}, {})
        hub.publish(s.id, end())
        ids.append(s.id)
    hub.open_stream({}, {})
    assert len(hub.streams) == 3 and ids[-1] in hub.streams and ids[0] not in hub.streams


def test_wait_wakes_on_publish_and_times_out():
    async def scenario():
        hub = Hub()
        s = hub.open_stream({}, {})
        assert await hub.wait(0) is True  # already past
        assert await hub.wait(hub.last_offset, timeout=0.01) is False
        waiter = asyncio.ensure_future(hub.wait(hub.last_offset, timeout=5))
        await asyncio.sleep(0)
        hub.publish(s.id, TextDelta("x"))
        assert await waiter is True
        assert hub.waiting == 0

    asyncio.run(scenario())


def test_event_json_is_encoded_once_with_all_fields():
    hub = Hub(clock=lambda: 12.5)
    s = hub.open_stream({"host": "h"}, {"status": 200})
    env = hub.publish(s.id, TextDelta("é"))
    assert env.json.decode() == (
        f'{{"offset":2,"stream":"{s.id}","seq":1,"type":"text.delta","time":12.5,"text":"é","index":0}}'
    )


# Any code point, lone surrogates included (json.loads makes them from "\\ud800"),
# with the characters JSON escapes drawn often.
ANY_TEXT = st.text(st.one_of(st.characters(exclude_categories=()), st.sampled_from('"\\\x00\x1f\x7f\ud800\udfffé')))


def standard_library_reads(payload_dict: dict) -> dict:
    """What an event's JSON must read back as: the envelope's dict, non-finite floats null."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in payload_dict.items()}


@given(
    st.sampled_from([TextDelta, ReasoningDelta]),
    ANY_TEXT,
    st.one_of(st.integers(), st.booleans()),
    st.integers(min_value=0),
    ANY_TEXT,
    st.integers(min_value=0),
    st.one_of(st.floats(), st.integers()),
)
def test_an_events_json_reads_back_as_its_envelope(kind, text, index, offset, stream, seq, time):
    payload = kind(text, index)
    env = Envelope.make(offset, stream, seq, time, payload)
    assert json.loads(env.json) == standard_library_reads(envelope_dict(offset, stream, seq, time, payload))


@pytest.mark.parametrize("text", ['"quoted" \\ back\nslash', "\x00\x1f\x7f", "\u2028\u2029", "é 🎉 日本", ""])
@pytest.mark.parametrize("time", [1763776000.123456, 12.5, 1e22, 1e-7, 0.0])
def test_a_delta_pinned(text, time):
    env = Envelope.make(3, "s\"1", 2, time, TextDelta(text, 1))
    assert json.loads(env.json) == {"offset": 3, "stream": "s\"1", "seq": 2, "type": "text.delta", "time": time,
                                    "text": text, "index": 1}
    assert env.json.startswith(b'{"offset":3,"stream":"s\\"1","seq":2,"type":"text.delta","time":')


def test_a_lone_surrogate_is_escaped_and_survives_the_round_trip():
    # A provider may send "\\ud800" (valid JSON, no UTF-8 form): the event still goes out.
    assert dumps({"text": "\ud800"}) == b'{"text":"\\ud800"}'
    env = Envelope.make(1, "s", 0, 1.5, TextDelta("a\ud800\\"))
    assert json.loads(env.json)["text"] == "a\ud800\\"
    assert dumps({"text": "\ud800", "n": [float("nan")]}) == b'{"text":"\\ud800","n":[null]}'


@pytest.mark.parametrize("time", [float("nan"), float("inf"), 7])
def test_unusual_times_are_valid_json(time):
    env = Envelope.make(1, "s", 0, time, TextDelta("x"))
    assert json.loads(env.json)["time"] == (time if math.isfinite(time) else None)


def test_health_is_503_once_the_hub_stops(tmp_path):
    from proxy_core.api.handlers import make_app
    from proxy_core.api.server import ApiHTTPServer, bind_private_unix_socket
    from proxy_core.client import StreamtapClient

    async def scenario():
        hub = Hub()
        server = ApiHTTPServer(make_app(hub))
        server.add_socket(bind_private_unix_socket(tmp_path / "api.sock"))
        try:
            async with StreamtapClient(str(tmp_path / "api.sock")) as tap:
                assert (await tap.health())["status"] == "ok"
                hub.close()
                health = await tap.health()
                assert health["status"] == "stopping" and health["checks"] == {"hub_running": False}
        finally:
            server.stop()

    asyncio.run(scenario())


def test_the_reassembled_message_is_bounded_and_says_so():
    hub = Hub(clock=lambda: 1.0)
    hub.message_limit = 10
    s = hub.open_stream({"host": "h"}, {})
    for text in ["hello ", "wor", "ld and more"]:
        hub.publish(s.id, TextDelta(text))
    hub.publish(s.id, ReasoningDelta("thinking"))
    message = s.message()
    assert message["text"] == "hello worl" and message["reasoning"] == ""
    assert message["truncated"] is True
    # the events themselves lost nothing
    texts = [json.loads(e.json).get("text") for e in hub.ring.read(0, 10)]
    assert texts[1:4] == ["hello ", "wor", "ld and more"]


def test_a_failing_reader_is_dropped_and_never_reaches_the_publisher():
    class Broken:
        closed = False

        def pump(self) -> None:
            raise RuntimeError("boom")

        def close(self) -> None:
            self.closed = True

    class Fine:
        pumped = 0

        def pump(self) -> None:
            self.pumped += 1

    hub = Hub()
    broken, fine = Broken(), Fine()
    hub.follow(broken)
    hub.follow(fine)
    hub.deliver()  # no exception
    assert broken.closed and broken not in hub.listeners
    assert fine.pumped == 1 and fine in hub.listeners


def test_a_follower_gets_a_batch_in_the_same_loop_turn_and_keepalives_when_quiet(tmp_path, monkeypatch):
    """Hub.deliver() writes to a following reader's socket before the loop turns again,
    and a quiet follower still hears from the server every KEEPALIVE_SECONDS."""
    import socket

    from proxy_core.api import handlers as api
    from proxy_core.api.server import ApiHTTPServer, bind_private_unix_socket

    monkeypatch.setattr(api, "KEEPALIVE_SECONDS", 0.3)
    path = str(tmp_path / "api.sock")

    async def until(condition, what: str) -> None:
        deadline = asyncio.get_running_loop().time() + 5
        while not condition():
            assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.01)

    async def scenario() -> None:
        hub = Hub()
        server = ApiHTTPServer(api.make_app(hub))
        server.add_socket(bind_private_unix_socket(tmp_path / "api.sock"))
        client = socket.socket(socket.AF_UNIX)
        client.connect(path)
        client.setblocking(False)
        received = bytearray()

        def read() -> bytes:
            try:
                received.extend(client.recv(65536))
            except BlockingIOError:
                pass
            return bytes(received)

        try:
            client.send(b"GET /v1/events?since=now HTTP/1.1\r\nHost: streamtap\r\n\r\n")
            await until(lambda: hub.listeners and b"\r\n\r\n" in read(), "the follower to be connected")
            received.clear()
            record = hub.open_stream({"host": "h"}, {})
            hub.publish(record.id, TextDelta("now"))
            hub.deliver()
            assert b'"text":"now"' in read()  # no await since the publish: same turn
            received.clear()
            await until(lambda: b": keep-alive" in read(), "a keep-alive")
        finally:
            client.close()
            server.stop()

    asyncio.run(scenario())


def test_an_envelope_keeps_the_event_once_as_json_and_rebuilds_the_payload():
    hub = Hub(clock=lambda: 2.5)
    s = hub.open_stream({"host": "h"}, {})
    env = hub.publish(s.id, TextDelta("hé", 1))
    assert env is not None
    assert (env.type, env.terminal, env.host) == ("text.delta", False, "h")
    assert payload_from_dict(env.to_dict()) == TextDelta("hé", 1)
    assert env.to_dict() == {"offset": 2, "stream": s.id, "seq": 1, "type": "text.delta", "time": 2.5,
                             "text": "hé", "index": 1}
    assert not any(isinstance(field, TextDelta) for field in env)  # the object itself is not kept


def test_what_the_taps_delivered_is_not_delivered_again_next_turn():
    class Counting:
        pumped = 0

        def pump(self) -> None:
            self.pumped += 1

        def close(self) -> None:
            pass

    async def scenario() -> None:
        hub = Hub()
        reader = Counting()
        hub.follow(reader)
        s = hub.open_stream({"host": "h"}, {})  # no deliver() by this publisher: served next turn
        await asyncio.sleep(0)
        assert reader.pumped == 1
        hub.publish(s.id, TextDelta("a"))
        hub.deliver()  # as the coalescer does after its run
        await asyncio.sleep(0)  # the safety-net call finds nothing new
        assert reader.pumped == 2

    asyncio.run(scenario())

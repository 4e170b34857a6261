"""Delivery guarantees of the hub and the API's event pumps together, without the proxy.

Readers are real HTTP clients on the API's Unix socket (h11 parses what they get); the
hub is fed directly. The model-based test draws interleavings of up to 20 streams,
ring sizes that force eviction, and readers with every filter, follow on and off, that
drain fast, slowly or not at all, and checks each reader against the events published.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy_core.api import handlers as api
from proxy_core.api import server as api_server
from proxy_core.api.server import ApiHTTPServer, bind_private_unix_socket
from proxy_core.hub.hub import Hub, Ring
from proxy_core.payloads import StreamAbort, StreamEnd, TextDelta

DEADLINE = 3.0  # seconds any reader may take to finish once publishing is over


class Reader:
    """One GET on the API socket, its NDJSON body collected as it arrives."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.items: list[dict[str, Any]] = []
        self.responded = False  # the status line and headers arrived
        self.finished = False  # the response ended (h11 EndOfMessage)
        self._conn = h11.Connection(h11.CLIENT)
        self._partial = b""
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def connect(self, path: str) -> None:
        self._reader, self._writer = await asyncio.open_unix_connection(path)
        request = h11.Request(method="GET", target=self.target,
                              headers=[("Host", "localhost"), ("Accept", "application/x-ndjson")])
        self._writer.write(self._conn.send(request) + self._conn.send(h11.EndOfMessage()))

    async def read_some(self, size: int = 65536) -> bool:
        """Read once; False at the end of the response or connection."""
        assert self._reader is not None
        if self.finished:
            return False
        data = await self._reader.read(size)
        self._conn.receive_data(data)
        while True:
            event = self._conn.next_event()
            if event is h11.NEED_DATA:
                break
            if isinstance(event, h11.Data):
                lines = (self._partial + bytes(event.data)).split(b"\n")
                self._partial = lines.pop()
                self.items.extend(json.loads(line) for line in lines if line)
            elif isinstance(event, h11.EndOfMessage):
                self.finished = True
            elif isinstance(event, h11.Response):
                assert event.status_code == 200, event
                self.responded = True
            elif isinstance(event, h11.ConnectionClosed):
                return False
        return not self.finished and bool(data)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()

    @property
    def events(self) -> list[dict[str, Any]]:
        return [i for i in self.items if i["type"] not in ("gap", "cutoff")]

    @property
    def newest(self) -> int:
        return max((i["offset"] for i in self.items), default=0)


async def serve(hub: Hub, tmp_path: Path) -> tuple[ApiHTTPServer, str]:
    path = tmp_path / "api.sock"
    server = ApiHTTPServer(api.make_app(hub))
    server.add_socket(bind_private_unix_socket(path))
    return server, str(path)


async def read_to_end(reader: Reader) -> None:
    async with asyncio.timeout(DEADLINE):
        while await reader.read_some():
            pass
    assert reader.finished, f"{reader.target}: the response never ended"


def publish_interleaved(hub: Hub, streams: int, events: int) -> list[str]:
    records = [hub.open_stream({"host": "api.example"}, {}) for _ in range(streams)]
    for n in range(events):
        for r in records:
            hub.publish(r.id, TextDelta(f"{r.id[:4]}-{n} "))
    for r in records:
        hub.publish(r.id, StreamEnd(200, "stop", {}, ""))
    return [r.id for r in records]


def test_filtered_readers_finish_whatever_the_interleaving(tmp_path):
    """16 interleaved streams of 500 events: each stream's replay, through both
    endpoints, is complete and closes (it used to stop after a stretch of the ring
    with nothing of that stream, waiting for a publish that never came)."""

    async def scenario() -> None:
        hub = Hub()
        server, path = await serve(hub, tmp_path)
        try:
            ids = publish_interleaved(hub, 16, 500)
            for sid in ids:
                for target in (f"/v1/streams/{sid}/events", f"/v1/events?stream={sid}&since=0&follow=0",
                               f"/v1/events?stream={sid}&since=0"):
                    reader = Reader(target)
                    await reader.connect(path)
                    await read_to_end(reader)
                    reader.close()
                    assert [e["seq"] for e in reader.events] == list(range(502)), target
                    assert reader.events[-1]["type"] == "stream.end"
            # A filter other than the stream scans the ring, and finishes too.
            reader = Reader("/v1/events?types=stream.end&since=0&follow=0")
            await reader.connect(path)
            await read_to_end(reader)
            assert sorted(e["stream"] for e in reader.events) == sorted(ids)
        finally:
            server.stop()

    asyncio.run(scenario())


def test_a_batch_published_right_after_another_is_written_in_the_same_turn(tmp_path):
    """The reader gets each batch in the loop turn it is published, not two turns later
    when the previous flush's future completes: under load, waiting for it left readers
    100-250 ms behind the client (make bench, reader behind)."""

    async def scenario() -> None:
        hub = Hub()
        server, path = await serve(hub, tmp_path)
        reader = Reader("/v1/events?format=ndjson")
        try:
            await reader.connect(path)
            async with asyncio.timeout(DEADLINE):
                while not (reader.responded and hub.listeners):
                    await reader.read_some()
            (pump,) = hub.listeners
            record = hub.open_stream({"host": "api.example"}, {})
            hub.deliver()
            hub.publish(record.id, TextDelta("a"))
            hub.deliver()
            assert pump.cursor == hub.last_offset  # type: ignore[attr-defined]
            hub.publish(record.id, TextDelta("b"))  # the same turn: the first flush has not completed
            hub.deliver()
            assert pump.cursor == hub.last_offset  # type: ignore[attr-defined]
            async with asyncio.timeout(DEADLINE):
                while len(reader.events) < 3:
                    await reader.read_some()
            assert [e.get("text") for e in reader.events] == [None, "a", "b"]
        finally:
            reader.close()
            server.stop()

    asyncio.run(scenario())


class CountingRing(Ring):
    """A ring that counts how many events are taken out of it."""

    taken = 0

    def read(self, after: int, limit: int) -> list:
        events = super().read(after, limit)
        self.taken += len(events)
        return events

    def at(self, offset: int):
        self.taken += 1
        return super().at(offset)


def test_a_streams_replay_costs_its_own_events_not_the_ring():
    hub = Hub(capacity=100_000)
    hub.ring = CountingRing(100_000)
    noise = hub.open_stream({"host": "other"}, {})
    mine = hub.open_stream({"host": "api.example"}, {})
    for n in range(120_000):  # the ring is full, and has wrapped
        hub.publish(noise.id, TextDelta("x"))
        if n % 20_000 == 0:
            hub.publish(mine.id, TextDelta(str(n)))
    hub.publish(mine.id, StreamEnd(200, "stop", {}, ""))
    hub.ring.taken = 0
    gap, events = hub.read_stream(mine, mine.first_offset - 1)
    # Its first events were pushed out of the ring: a gap names exactly them.
    assert gap is not None and gap[0] == mine.first_offset
    assert [e.seq for e in events] == list(range(events[0].seq, mine.next_seq))
    assert hub.ring.taken == len(events)  # not one event of the other stream was looked at
    assert len(mine.index) == len(events)  # and the index dropped the evicted ones


def test_a_stream_that_lost_nothing_gets_no_gap():
    hub = Hub(capacity=50)
    old = hub.open_stream({"host": "h"}, {})
    for _ in range(100):
        hub.publish(old.id, TextDelta("o"))
    mine = hub.open_stream({"host": "h"}, {})
    hub.publish(mine.id, TextDelta("m"))
    assert hub.read_stream(mine, 0) == (None, hub.ring.read(mine.first_offset - 1, 2))
    gap, _ = hub.read_stream(old, 0)
    assert gap == (1, hub.ring.oldest - 1)


def test_the_index_follows_a_ring_resized_smaller():
    hub = Hub(capacity=100)
    s = hub.open_stream({"host": "h"}, {})
    for _ in range(60):
        hub.publish(s.id, TextDelta("t"))
    hub.set_capacity(10)
    gap, events = hub.read_stream(s, 0)
    assert gap == (1, hub.ring.oldest - 1)
    assert [e.offset for e in events] == list(range(hub.ring.oldest, hub.last_offset + 1))


# The model-based test -------------------------------------------------------------

TYPES = ("stream.start", "text.delta", "stream.end", "stream.abort")


@dataclass
class ReaderPlan:
    join_round: int
    since: str  # "0", "now" or a number
    endpoint: str  # "events" or "stream"
    stream: int | None  # index of the stream it filters on (if any)
    host: str | None
    types: frozenset[str]
    follow: bool
    drain: str  # "fast", "slow" or "stalled"


@dataclass
class Plan:
    capacity: int
    max_lag: int
    steps: list[int]  # the stream each publish belongs to, in order
    rounds: list[int]  # how many publishes before each delivery
    readers: list[ReaderPlan] = field(default_factory=list)


@st.composite
def plans(draw) -> Plan:
    n = draw(st.integers(1, 20))
    lengths = [draw(st.integers(2, 80)) for _ in range(n)]  # start ... terminal
    steps = draw(st.permutations([i for i in range(n) for _ in range(lengths[i])]))
    rounds, left = [], len(steps)
    while left:
        size = draw(st.integers(1, max(1, min(left, 120))))
        rounds.append(size)
        left -= size
    plan = Plan(capacity=draw(st.sampled_from([5, 40, 300, 5000])), max_lag=draw(st.sampled_from([30, 100_000])),
                steps=list(steps), rounds=rounds)
    for _ in range(draw(st.integers(1, 6))):
        endpoint = draw(st.sampled_from(["events", "stream"]))
        plan.readers.append(ReaderPlan(
            join_round=draw(st.integers(0, len(rounds))),
            since=draw(st.sampled_from(["0", "now", "random"])),
            endpoint=endpoint,
            stream=draw(st.integers(0, n - 1)) if endpoint == "stream" or draw(st.booleans()) else None,
            host=draw(st.sampled_from([None, "even.example", "odd.example"])),
            types=draw(st.frozensets(st.sampled_from(TYPES))),
            follow=draw(st.booleans()),
            drain=draw(st.sampled_from(["fast", "slow", "stalled"])),
        ))
    return plan


@dataclass
class Joined:
    plan: ReaderPlan
    reader: Reader
    after: int  # the offset it starts after
    newest_at_join: int
    record: Any  # the stream it reads through the index, if any
    task: asyncio.Task | None = None


def matches(j: Joined, e: dict[str, Any], host_of: dict[str, str]) -> bool:
    p = j.plan
    if j.record is not None and e["stream"] != j.record.id:
        return False
    return (p.endpoint == "stream" or ((p.host is None or host_of[e["stream"]] == p.host)
                                       and (not p.types or e["type"] in p.types)))


async def run_plan(plan: Plan, tmp_path: Path) -> list[Joined]:
    hub = Hub(capacity=plan.capacity)
    path = tmp_path / "api.sock"
    server = ApiHTTPServer(api.make_app(hub, max_lag=plan.max_lag))
    server.add_socket(bind_private_unix_socket(path))
    published: list[dict[str, Any]] = []  # the model: every event, as readers see them
    host_of: dict[str, str] = {}
    remaining = {i: plan.steps.count(i) for i in set(plan.steps)}
    records: dict[int, Any] = {}
    joined: list[Joined] = []

    async def drain(j: Joined) -> None:
        size = 65536 if j.plan.drain == "fast" else 700
        while await j.reader.read_some(size):
            if j.plan.drain == "slow":
                await asyncio.sleep(0)

    async def join(p: ReaderPlan) -> None:
        record = records.get(p.stream) if p.stream is not None else None
        if p.endpoint == "stream" and record is None:
            return  # that stream has not started yet: nothing to ask for
        since = {"0": "0", "now": "now"}.get(p.since, str(hub.last_offset // 2))
        query = f"since={since}&follow={int(p.follow)}"
        if p.endpoint == "stream":
            target = f"/v1/streams/{record.id}/events?{query}"
        else:
            filters = [f"stream={record.id}"] if record is not None else []
            filters += [f"host={p.host}"] if p.host else []
            filters += [f"types={','.join(sorted(p.types))}"] if p.types else []
            target = "/v1/events?" + "&".join([query, *filters])
        reader = Reader(target)
        await reader.connect(str(path))
        async with asyncio.timeout(DEADLINE):
            while not reader.responded:  # its start offset is fixed by then
                await reader.read_some(1)
        after = hub.last_offset if since == "now" else int(since)
        j = Joined(p, reader, after, hub.last_offset, record)
        if p.drain != "stalled":
            j.task = asyncio.create_task(drain(j))
        joined.append(j)

    try:
        step = 0
        for round_no, size in enumerate([*plan.rounds, 0]):
            for p in plan.readers:
                if p.join_round == round_no:
                    await join(p)
            for i in plan.steps[step : step + size]:
                remaining[i] -= 1
                if i not in records:
                    host = "even.example" if i % 2 == 0 else "odd.example"
                    records[i] = hub.open_stream({"host": host}, {})
                    host_of[records[i].id] = host
                    env = hub.ring.at(hub.last_offset)
                elif remaining[i] == 0:
                    terminal = StreamEnd(200, "stop", {}, "") if i % 3 else StreamAbort("client", "gone", {})
                    env = hub.publish(records[i].id, terminal)
                else:
                    env = hub.publish(records[i].id, TextDelta(f"{i}:{remaining[i]} " * (8 + 80 * (i % 3))))
                published.append({"offset": env.offset, "stream": env.stream, "type": env.type})
            step += size
            hub.deliver()
            for _ in range(3):
                await asyncio.sleep(0)

        for j in joined:
            if j.task is None:
                j.task = asyncio.create_task(drain(j))
        for j in joined:
            expected = [e for e in published if e["offset"] > j.after and matches(j, e, host_of)]
            ends = not j.plan.follow or j.record is not None
            async with asyncio.timeout(DEADLINE):
                if ends:
                    await j.task
                else:  # a follower of everything: until it has the last event it should get
                    while not j.reader.finished and (expected and j.reader.newest < expected[-1]["offset"]):
                        await asyncio.sleep(0.002)
            check(j, expected, published, ends)
        for j in joined:
            j.reader.close()
        async with asyncio.timeout(DEADLINE):  # every handler has seen its reader go
            while hub.subscribers:
                await asyncio.sleep(0.002)
        return joined
    finally:
        for j in joined:
            j.reader.close()
            if j.task is not None:
                j.task.cancel()
        server.stop()


def check(j: Joined, expected: list[dict], published: list[dict], ends: bool) -> None:
    what = j.reader.target
    items = j.reader.items
    offsets = [i["offset"] for i in j.reader.events]
    assert offsets == sorted(set(offsets)), f"{what}: out of order or repeated"
    by_offset = {e["offset"]: e for e in published}
    allowed = {e["offset"] for e in expected}
    for e in j.reader.events:
        assert e["offset"] > j.after and e["offset"] in allowed, (what, e)
        assert (e["stream"], e["type"]) == (by_offset[e["offset"]]["stream"], by_offset[e["offset"]]["type"])
    covered = set(offsets)
    for g in (i for i in items if i["type"] == "gap"):
        assert g["from"] <= g["to"]
        covered.update(range(g["from"], g["to"] + 1))
    cutoff = next((i for i in items if i["type"] == "cutoff"), None)
    if cutoff is not None:
        assert j.plan.follow and items[-1] is cutoff, f"{what}: a cutoff only ends a follower"
        expected = [e for e in expected if e["offset"] <= cutoff["resume_from"]]
    elif not j.plan.follow:
        expected = [e for e in expected if e["offset"] <= max(j.newest_at_join, j.reader.newest)]
    missing = [e["offset"] for e in expected if e["offset"] not in covered]
    assert not missing, f"{what}: silently lost offsets {missing[:10]}"
    if ends:
        assert j.reader.finished, f"{what}: never finished"
        if j.record is not None and j.plan.follow and cutoff is None:
            terminal = [e for e in published if e["stream"] == j.record.id][-1]
            if terminal in expected:
                assert terminal["offset"] in covered, f"{what}: ended before its stream's terminal event"


@settings(max_examples=150)
@given(plan=plans())
def test_every_reader_gets_every_matching_event_once_or_a_gap(plan, tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(api_server, "SEND_BUFFER", 4096)  # so that stalled readers fill it soon
        asyncio.run(run_plan(plan, tmp_path_factory.mktemp("delivery")))


def test_bad_parameters_are_refused_with_400_naming_them(tmp_path):
    async def scenario() -> None:
        hub = Hub()
        record = hub.open_stream({"host": "h"}, {})
        server, path = await serve(hub, tmp_path)
        cases = {
            "/v1/events?types=text.deltaa": "types: unknown event type 'text.deltaa'",
            "/v1/events?typse=text.delta": "typse: unknown parameter",
            "/v1/events?format=xml": "format: expected sse or ndjson, got 'xml'",
            "/v1/events?follow=maybe": "follow: expected true or false",
            "/v1/events?since=-3": "since: must be an offset",
            "/v1/streams?state=bogus": "state: expected one of active, ended, aborted, error, got 'bogus'",
            f"/v1/streams/{record.id}/events?format=xml": "format: expected sse or ndjson",
            f"/v1/streams/{record.id}/events?stream=x": "stream: unknown parameter",
            f"/v1/streams/{record.id}?verbose=1": "verbose: unknown parameter",
            "/v1/streams/next?timeout=forever": "timeout: expected a number of seconds",
            "/healthz?x=1": "x: unknown parameter",
        }
        try:
            for target, message in cases.items():
                reader, writer = await asyncio.open_unix_connection(path)
                writer.write(f"GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
                async with asyncio.timeout(DEADLINE):
                    response = await reader.read()
                writer.close()
                head, _, body = response.partition(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 400"), (target, response)
                assert message in json.loads(body)["error"], (target, body)
            # and the good ones still work
            reader = Reader("/v1/events?types=text.delta,stream.end&since=0&follow=0&format=ndjson")
            await reader.connect(path)
            await read_to_end(reader)
        finally:
            server.stop()

    asyncio.run(scenario())

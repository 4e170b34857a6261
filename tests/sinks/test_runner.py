"""SinkRunner with a broker in memory: the linger fills batches, a backlog goes in slices
with the loop free between them, the confirmed position is written at most every
ack_interval and a crash resends only what came after it, a full spool's gaps each have
a message and a key of their own, and nothing is lost or reordered whatever fails when."""

from __future__ import annotations

import asyncio
import json
import random
import time

import pytest

from proxy_core.hub.hub import Hub
from proxy_core.payloads import TextDelta
from proxy_core.sinks import runner as runner_module
from proxy_core.sinks.runner import Broker, SinkMessage, SinkRunner
from proxy_core.sinks.spool import Position, Spool


class MemoryBroker(Broker):
    """Stores what it is sent. `down`: refuses everything; `flaky`: a random generator
    that fails some sends, before storing or (a lost reply) after storing."""

    name = "memory"

    def __init__(self, flaky: random.Random | None = None, yields: bool = True) -> None:
        self.yields = yields  # False: a send that never suspends (its reply already there)
        self.stored: list[SinkMessage] = []
        self.sends: list[tuple[float, int]] = []  # (time, messages)
        self.down = False
        self.flaky = flaky
        self.ticks_at_send: list[int] = []
        self.ticks = 0  # advanced by a task of the test, to see the loop run between sends
        self.connects = 0

    async def connect(self) -> None:
        self.connects += 1
        if self.down:
            raise ConnectionError("memory broker down")

    async def send(self, messages: list[SinkMessage]) -> None:
        if self.down:
            raise ConnectionError("memory broker down")
        self.sends.append((time.monotonic(), len(messages)))
        self.ticks_at_send.append(self.ticks)
        if self.flaky is not None and self.flaky.random() < 0.2:
            raise ConnectionError("refused")
        if self.yields:
            await asyncio.sleep(0)
        self.stored += messages
        if self.flaky is not None and self.flaky.random() < 0.2:
            raise ConnectionError("the reply was lost")  # stored, but the sink resends: a duplicate

    async def close(self) -> None:
        pass


def once(messages: list[SinkMessage]) -> list[SinkMessage]:
    """What a consumer keeps: the first of each dedup key."""
    seen: set[str] = set()
    out = []
    for m in messages:
        if m.dedup_key not in seen:
            seen.add(m.dedup_key)
            out.append(m)
    return out


def events(messages: list[SinkMessage]) -> list[tuple[str | None, int | None]]:
    return [(m.stream, m.seq) for m in messages if m.type != "gap"]


async def until(predicate, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


def hub_with(runner: SinkRunner) -> tuple[Hub, str]:
    hub = Hub(capacity=100_000)
    hub.sinks.append(runner.put)
    return hub, hub.open_stream({"host": "h", "provider": "openai"}, {}).id


def test_events_put_together_go_in_one_batch_after_the_linger(tmp_path):
    broker = MemoryBroker()

    async def scenario() -> float:
        runner = SinkRunner(broker, tmp_path, 1 << 20, "inst", linger=0.05)
        runner.start()
        hub, stream = hub_with(runner)
        put_at = time.monotonic()
        for i in range(29):
            hub.publish(stream, TextDelta(f"t{i}"))
        await until(lambda: len(broker.stored) == 30)
        await runner.stop()
        return put_at

    put_at = asyncio.run(scenario())
    assert [n for _, n in broker.sends] == [30]  # stream.start and 29 deltas, one send
    assert broker.sends[0][0] - put_at >= 0.045  # after the linger
    assert events(broker.stored) == [(broker.stored[0].stream, seq) for seq in range(30)]


def test_a_trickle_is_sent_a_linger_at_a_time(tmp_path):
    broker = MemoryBroker()

    async def scenario() -> float:
        runner = SinkRunner(broker, tmp_path, 1 << 20, "inst", linger=0.04)
        runner.start()
        hub, stream = hub_with(runner)
        started = time.monotonic()
        for i in range(60):  # one event every ~2 ms
            hub.publish(stream, TextDelta(f"t{i}"))
            await asyncio.sleep(0.002)
        took = time.monotonic() - started
        await until(lambda: len(broker.stored) == 61)
        await runner.stop()
        return took

    took = asyncio.run(scenario())
    assert len(broker.sends) <= took / 0.04 + 2  # a send per linger, not one per event
    assert [seq for _, seq in events(broker.stored)] == list(range(61))


def test_a_backlog_goes_in_slices_with_the_loop_free_between_them(tmp_path, monkeypatch):
    """After an outage the backlog is read back from the files (memory keeps only the
    last MEMORY) and sent SLICE messages at a time, each confirmed before the next, with
    the proxy's own callbacks run between two slices."""
    monkeypatch.setattr(runner_module, "MEMORY", 100)
    broker = MemoryBroker(yields=False)
    broker.down = True
    reads: list[int] = []

    async def scenario() -> None:
        runner = SinkRunner(broker, tmp_path, 1 << 24, "inst", linger=0.001)
        real_read = runner.spool.read

        def read(after: Position, max_lines: int, until: Position | None = None):
            lines = real_read(after, max_lines, until)
            reads.append(len(lines))
            return lines

        runner.spool.read = read  # type: ignore[method-assign]
        runner.start()
        hub, stream = hub_with(runner)
        for i in range(1499):
            hub.publish(stream, TextDelta(f"t{i}"))
        await until(lambda: runner.spool.size > 0 and not runner._incoming)

        async def tick() -> None:
            while True:
                broker.ticks += 1
                await asyncio.sleep(0)

        ticker = asyncio.create_task(tick())
        broker.down = False
        await until(lambda: len(broker.stored) == 1500, 20)
        ticker.cancel()
        await runner.stop()

    asyncio.run(scenario())
    assert max(n for _, n in broker.sends) <= runner_module.SLICE
    assert sum(reads) >= 1400 and max(reads) <= runner_module.BATCH  # read back, BATCH lines at a time
    ticks = broker.ticks_at_send
    assert all(b > a for a, b in zip(ticks, ticks[1:], strict=False))  # the loop ran between two slices
    assert [seq for _, seq in events(broker.stored)] == list(range(1500))


def test_the_confirmed_position_is_written_at_most_every_ack_interval(tmp_path, monkeypatch):
    persisted: list[tuple[float, Position]] = []
    real_persist = Spool.persist

    def persist(self: Spool, position: Position) -> None:
        persisted.append((time.monotonic(), position))
        real_persist(self, position)

    monkeypatch.setattr(Spool, "persist", persist)
    broker = MemoryBroker()

    async def scenario() -> Position:
        runner = SinkRunner(broker, tmp_path, 1 << 20, "inst", linger=0.005, ack_interval=0.2)
        runner.start()
        hub, stream = hub_with(runner)
        started = time.monotonic()
        i = 0
        while time.monotonic() - started < 0.7:  # ~100 batches
            hub.publish(stream, TextDelta(f"t{i}"))
            i += 1
            await asyncio.sleep(0.003)
        await until(lambda: len(broker.stored) == i + 1)
        await runner.stop()
        return runner.spool.confirmed

    confirmed = asyncio.run(scenario())
    assert len(broker.sends) > 20
    during = [t for t, _ in persisted[:-1]]  # the last one is stop()'s
    assert len(during) <= 5
    assert all(b - a >= 0.19 for a, b in zip(during, during[1:], strict=False))
    assert persisted[-1][1] == confirmed  # stopping records everything confirmed
    again = Spool(tmp_path, 1 << 20)
    assert again.acked == confirmed and again.size == 0


def test_a_crash_resends_only_what_came_after_the_last_recorded_position(tmp_path):
    """Killed without stop(): the next start resends what was confirmed after the
    position last written (at most ack_interval's worth), and a consumer's dedup makes
    every event arrive once, in order."""
    first, second = MemoryBroker(), MemoryBroker()

    async def crashed_run() -> SinkRunner:
        runner = SinkRunner(first, tmp_path, 1 << 20, "inst", linger=0.002, ack_interval=0.1)
        runner.start()
        hub, stream = hub_with(runner)
        for i in range(200):
            hub.publish(stream, TextDelta(f"t{i}"))
            if i % 10 == 0:
                await asyncio.sleep(0.01)
        await until(lambda: len(first.stored) == 201)
        for task in runner._tasks:  # the process dies: no stop(), nothing more written
            task.cancel()
        await asyncio.sleep(0)
        if runner._persist_timer is not None:
            runner._persist_timer.cancel()
        runner._io.shutdown(wait=True)
        return runner

    async def restart() -> None:
        runner = SinkRunner(second, tmp_path, 1 << 20, "inst2", linger=0.002)
        runner.start()
        await until(lambda: runner.spool.size == 0)
        await runner.stop()

    asyncio.run(crashed_run())
    asyncio.run(restart())
    resent = second.stored
    assert len(resent) < 201  # not everything: what was recorded stays sent
    assert first.stored[len(first.stored) - len(resent):] == resent  # a suffix, the same messages
    assert once(first.stored + resent) == first.stored


def test_a_full_spool_gives_a_gap_message_each_with_its_own_key(tmp_path, monkeypatch):
    """While the spool stays full, one gap message per GAP_INTERVAL, each counting what was
    dropped at its place and keyed by its own number (JetStream would drop a second gap
    with the first one's Nats-Msg-Id); every event is either sent or counted."""
    monkeypatch.setattr(runner_module, "GAP_INTERVAL", 0.1)
    broker = MemoryBroker()
    broker.down = True

    async def scenario() -> SinkRunner:
        runner = SinkRunner(broker, tmp_path, 4000, "inst", linger=0.001)
        runner.start()
        hub, stream = hub_with(runner)
        for burst in range(4):
            for i in range(40):
                hub.publish(stream, TextDelta(f"{burst}:{i:03d} " * 4))
            await asyncio.sleep(0.15)
        broker.down = False
        await until(lambda: runner.spool.size == 0 and not runner._dropped)
        await runner.stop()
        return runner

    runner = asyncio.run(scenario())
    gaps = [m for m in broker.stored if m.type == "gap"]
    assert len(gaps) >= 2
    assert len({m.dedup_key for m in gaps}) == len(gaps)
    dropped = [json.loads(m.event)["dropped"] for m in gaps]
    assert sum(dropped) == runner.gaps > 0
    sent = events(broker.stored)
    assert len(sent) + runner.gaps == 161
    assert [seq for _, seq in sent] == sorted(seq for _, seq in sent)


def test_a_restart_sends_what_the_last_run_left_spooled(tmp_path):
    down, up = MemoryBroker(), MemoryBroker()
    down.down = True

    async def first() -> None:
        runner = SinkRunner(down, tmp_path, 1 << 20, "inst", linger=0.001)
        runner.start()
        hub, stream = hub_with(runner)
        for i in range(99):
            hub.publish(stream, TextDelta(f"t{i}"))
        await until(lambda: not runner._incoming)
        await runner.stop(timeout=0.2)

    async def second() -> None:
        runner = SinkRunner(up, tmp_path, 1 << 20, "inst2", linger=0.001)
        runner.start()
        await until(lambda: len(up.stored) == 100)
        await runner.stop()

    asyncio.run(first())
    asyncio.run(second())
    assert {m.instance for m in up.stored} == {"inst"}  # the events keep who published them
    assert [seq for _, seq in events(up.stored)] == list(range(100))


@pytest.mark.parametrize("seed", range(6))
def test_whatever_fails_when_nothing_is_lost_or_reordered(tmp_path, monkeypatch, seed):
    """Random bursts and pauses, sends refused or their replies lost, a broker outage, a
    small memory (most is read back from the files), a restart midway: a consumer that
    dedups gets every event once, in the order published."""
    rng = random.Random(seed)
    monkeypatch.setattr(runner_module, "MEMORY", rng.choice([5, 50, 2000]))
    monkeypatch.setattr(runner_module, "SLICE", rng.choice([1, 7, 50]))
    monkeypatch.setattr(runner_module, "BATCH", rng.choice([3, 13, 500]))
    monkeypatch.setattr(runner_module, "SPOOL_STEP", rng.choice([4, 256]))
    monkeypatch.setattr(runner_module, "MAX_BACKOFF", 0.02)
    broker = MemoryBroker(flaky=random.Random(seed))
    published: list[tuple[str, int]] = []

    async def run(instance: str, events_: int, outage: bool) -> None:
        runner = SinkRunner(broker, tmp_path, 1 << 24, instance, linger=rng.choice([0.0, 0.002]),
                            ack_interval=rng.choice([0.001, 0.05]))
        runner.start()
        hub = Hub(capacity=100_000)
        hub.sinks.append(runner.put)
        streams = [hub.open_stream({"host": "h", "provider": "openai"}, {}).id for _ in range(3)]
        for s in streams:
            published.append((s, 0))
        n = 0
        while n < events_:
            if outage and n == events_ // 3:
                broker.down = True
            if outage and n == 2 * events_ // 3:
                broker.down = False
            for _ in range(rng.randint(1, 60)):
                s = rng.choice(streams)
                env = hub.publish(s, TextDelta(f"{n}"))
                assert env is not None
                published.append((s, env.seq))
                n += 1
            await asyncio.sleep(rng.choice([0, 0.001, 0.005]))
        broker.down = False
        await runner.stop(timeout=rng.choice([0.01, 5.0]))  # maybe leaving some spooled

    asyncio.run(run("a", 400, outage=True))
    asyncio.run(run("b", 300, outage=False))

    async def drain() -> None:
        broker.flaky = None
        runner = SinkRunner(broker, tmp_path, 1 << 24, "c", linger=0.001)
        runner.start()
        await until(lambda: runner.spool.size == 0)
        await runner.stop()

    asyncio.run(drain())
    got = [(m.stream, m.seq) for m in once(broker.stored)]
    assert sorted(got) == sorted(published)  # each once
    for stream in {s for s, _ in published}:
        assert [seq for s, seq in got if s == stream] == [seq for s, seq in published if s == stream]
    position = {key: i for i, key in enumerate(got)}
    assert [position[key] for key in published] == sorted(position[key] for key in published)  # spool order


def test_an_unreadable_spool_line_is_skipped_and_the_rest_sent(tmp_path):
    spool = Spool(tmp_path, 1 << 20)
    good = b'{"instance":"i","stream":"s","seq":%d,"provider":"p","type":"text.delta"}\t{}'
    spool.append([good % 0, b"not a spool line", good % 1])
    spool.close()
    broker = MemoryBroker()

    async def scenario() -> None:
        runner = SinkRunner(broker, tmp_path, 1 << 20, "i2", linger=0.001)
        runner.start()
        await until(lambda: runner.spool.size == 0)
        await runner.stop()

    asyncio.run(scenario())
    assert events(broker.stored) == [("s", 0), ("s", 1)]


def test_a_broker_down_from_the_start_is_said_once_per_outage(tmp_path, caplog):
    broker = MemoryBroker()
    broker.down = True
    said = lambda: [r for r in caplog.records if "spooling until it is back" in r.getMessage()]  # noqa: E731

    async def run() -> None:
        runner = SinkRunner(broker, tmp_path, 1 << 20, "inst", linger=0.001)
        runner.start()
        hub, stream = hub_with(runner)
        hub.publish(stream, TextDelta("a"))
        await until(lambda: broker.connects >= 4)  # retried with backoff: still one line
        assert len(said()) == 1 and "memory broker down" in said()[0].getMessage()
        broker.down = False
        await until(lambda: runner.connected and len(broker.stored) == 2)
        broker.down = True
        hub.publish(stream, TextDelta("b"))
        await until(lambda: len(said()) == 2)  # the next outage is said again
        broker.down = False
        await until(lambda: len(broker.stored) == 3)
        await runner.stop()

    with caplog.at_level("INFO", logger="proxy_core.sinks.runner"):
        asyncio.run(run())

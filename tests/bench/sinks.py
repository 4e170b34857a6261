"""Sinks for `make bench` (or `python -m tests.bench.sinks [OUT.md]`): the per-chunk path
with three sinks on against none, how many events per second reach real NATS and Redis
servers on loopback, and what the proxied clients see when the broker is SIGKILLed mid-run
and restarted 5 s later (a real `streamtap run`, end to end)."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from proxy_core.hub.hub import Hub
from proxy_core.payloads import TextDelta
from proxy_core.pipeline.tap import StreamTap
from proxy_core.sinks.nats import NatsBroker
from proxy_core.sinks.redis import RedisBroker
from proxy_core.sinks.runner import BATCH, SinkRunner
from tests.bench.tap_path import body
from tests.support.api_http import UnixHTTPConnection
from tests.support.brokers import Broker, NatsServer, RedisServer, free_port
from tests.support.pki import make_pki
from tests.support.proc import STREAMTAP

EVENTS = 50_000


class DefaultRedis(RedisServer):
    fsync = "everysec"  # Redis's default


def tap_with_sinks(sinks: int, rounds: int = 5) -> float:
    """µs per event of the tap path (1 KiB chunks) with `sinks` hub sinks attached."""

    async def once() -> float:
        hub = Hub(capacity=100_000)
        spool = Path(tempfile.mkdtemp(prefix="bench-spool-"))
        runners = [SinkRunner(RedisBroker("redis://127.0.0.1:1/0"), spool / str(i), 1 << 30, hub.instance,
                              hub.metrics) for i in range(sinks)]  # port 1: nothing listens, all is spooled
        hub.sinks.extend(r.put for r in runners)
        record = hub.open_stream({"host": "bench", "provider": "openai"}, {})
        tap = StreamTap("openai", 200, "text/event-stream", None)
        wire = body()
        start = time.perf_counter()
        for i in range(0, len(wire), 1024):
            for payload in tap.feed(wire[i:i + 1024]):
                hub.publish(record.id, payload)
        took = time.perf_counter() - start
        shutil.rmtree(spool, ignore_errors=True)
        return took * 1e6 / record.next_seq

    return min(asyncio.run(once()) for _ in range(rounds))


def throughput(make_broker, server_cls) -> float:
    """Events per second from `put` to confirmed by the broker."""
    work = Path(tempfile.mkdtemp(prefix="bench-sink-"))
    try:
        with server_cls(work / "server") as server:
            async def run() -> float:
                hub = Hub(capacity=EVENTS + 10)
                runner = SinkRunner(make_broker(server.url), work / "spool", 1 << 30, hub.instance, hub.metrics)
                runner.start()
                hub.sinks.append(runner.put)
                record = hub.open_stream({"host": "bench", "provider": "openai"}, {})
                start = time.perf_counter()
                for i in range(EVENTS - 1):
                    hub.publish(record.id, TextDelta(f"token {i} "))
                while runner.sent < EVENTS:
                    await asyncio.sleep(0.01)
                took = time.perf_counter() - start
                await runner.stop()
                return EVENTS / took

            return asyncio.run(run())
    finally:
        shutil.rmtree(work, ignore_errors=True)


CATCHUP_RATE = 1000  # events/s published throughout
CATCHUP_DOWN = 5.0  # s the broker is down


def catchup_holds(make_broker, server_cls) -> dict[str, float]:
    """A sink in this process (asyncio's loop) whose broker is SIGKILLed, then started again
    after CATCHUP_DOWN s while CATCHUP_RATE events/s keep coming: from the restart until
    the backlog is sent, the longest any one callback held the loop (its CPU time, and
    wall time, which includes the machine's other load), and how many held it over 2 ms."""
    work = Path(tempfile.mkdtemp(prefix="bench-sink-catchup-"))
    server = server_cls(work / "server").start()
    holds: list[tuple[float, float, bool]] = []  # (CPU s, wall s, a GC ran in it) of each callback while catching up
    measuring = False
    run_handle = asyncio.events.Handle._run
    collections = [0]

    def count_gc(phase: str, info: dict) -> None:
        collections[0] += phase == "start"

    def timed_run(handle: asyncio.events.Handle) -> None:
        if not measuring:
            return run_handle(handle)
        wall, cpu, gcs = time.perf_counter(), time.thread_time(), collections[0]
        run_handle(handle)
        holds.append((time.thread_time() - cpu, time.perf_counter() - wall, collections[0] > gcs))

    async def publish(hub: Hub, streams: list[str], seconds: float) -> None:
        start = next_at = time.perf_counter()
        i = 0
        while time.perf_counter() - start < seconds:
            hub.publish(streams[i % len(streams)], TextDelta(f"token {i} "))
            i += 1
            next_at += 1 / CATCHUP_RATE
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))

    async def run() -> dict[str, float]:
        nonlocal measuring
        hub = Hub(capacity=100_000)
        runner = SinkRunner(make_broker(server.url), work / "spool", 1 << 30, hub.instance, hub.metrics)
        runner.start()
        hub.sinks.append(runner.put)
        streams = [hub.open_stream({"host": "bench", "provider": "openai"}, {}).id for _ in range(20)]
        await publish(hub, streams, 1.0)
        assert server.proc is not None
        server.proc.kill()
        await asyncio.to_thread(server.proc.wait)
        await publish(hub, streams, CATCHUP_DOWN)
        backlog = hub.ring.last - runner.sent
        await asyncio.to_thread(server.start)
        back = time.perf_counter()
        measuring = True
        publishing = asyncio.ensure_future(publish(hub, streams, 30.0))
        while hub.ring.last - runner.sent > 50 and time.perf_counter() - back < 30:
            await asyncio.sleep(0.005)
        drained = time.perf_counter() - back
        measuring = False
        publishing.cancel()
        await runner.stop()
        no_gc = [h for h in holds if not h[2]] or [(0.0, 0.0, False)]
        return {"backlog": backlog, "drained_s": drained, "max_cpu_ms": max(c for c, _, _ in no_gc) * 1e3,
                "max_wall_ms": max(w for _, w, _ in no_gc) * 1e3,
                "max_gc_cpu_ms": max((c for c, _, gc_ran in holds if gc_ran), default=0.0) * 1e3,
                "over_2ms": sum(1 for c, _, _ in no_gc if c > 0.002), "callbacks": len(holds)}

    quiet = logging.getLogger("nats")  # nats-py logs each refused reconnection with its traceback
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    gc.callbacks.append(count_gc)
    asyncio.events.Handle._run = timed_run  # type: ignore[method-assign, assignment]
    try:
        return asyncio.run(run())
    finally:
        asyncio.events.Handle._run = run_handle  # type: ignore[method-assign]
        gc.callbacks.remove(count_gc)
        quiet.setLevel(level)
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


def measure() -> list[str]:
    outage = broker_outage_lines()
    none, three = tap_with_sinks(0), tap_with_sinks(3)
    nats = throughput(lambda url: NatsBroker(f"{url}/bench"), NatsServer)
    redis = throughput(lambda url: RedisBroker(f"{url}?stream=bench"), DefaultRedis)
    holds = {"NATS JetStream": catchup_holds(lambda url: NatsBroker(f"{url}/bench"), NatsServer),
             "Redis Streams": catchup_holds(lambda url: RedisBroker(f"{url}?stream=bench"), DefaultRedis)}
    print(f"sinks: tap {none:.1f} µs/event without, {three:.1f} with three; nats {nats:,.0f}/s, "
          f"redis {redis:,.0f}/s", file=sys.stderr)
    for name, h in holds.items():
        print(f"sinks: {name} catch-up of {h['backlog']:,.0f} events: longest callback {h['max_cpu_ms']:.2f} ms CPU "
              f"({h['max_wall_ms']:.2f} ms wall), {h['over_2ms']:.0f} over 2 ms; with a GC in it "
              f"{h['max_gc_cpu_ms']:.2f} ms; drained in {h['drained_s']:.2f} s", file=sys.stderr)
    return [
        "## Sinks",
        "",
        "tests/bench/sinks.py. The per-chunk path (tap_path's stream, 1 KiB chunks, best of 5)",
        "with no sink and with three sinks attached to the hub (each event queued three times;",
        "the spooling and sending happen off this path). Then the events per second that",
        f"one sink moves from the hub into a real server on loopback ({EVENTS:,} events, confirmed).",
        "",
        "| measure | value |",
        "|---|---|",
        f"| tap path, no sink | {none:.1f} µs per event |",
        f"| tap path, three sinks | {three:.1f} µs per event ({(three / none - 1) * 100:+.0f}%) |",
        f"| into NATS JetStream | {nats:,.0f} events/s |",
        f"| into Redis Streams (appendfsync everysec) | {redis:,.0f} events/s |",
        "",
        f"Catching up, in this process (asyncio's loop): the broker SIGKILLed, started again after "
        f"{CATCHUP_DOWN:g} s,",
        f"{CATCHUP_RATE:,} events/s published throughout. From the restart until the backlog is sent: the",
        "longest any one callback held the loop (CPU time; wall time includes the machine's other load)",
        "and how many held it over 2 ms of CPU, leaving out those a garbage collection of the interpreter",
        "fell into (the longest of these beside: a collection takes what it takes wherever it falls).",
        "",
        "| broker | backlog | longest callback, CPU | … wall | callbacks over 2 ms | with a GC in it | "
        "sent after the restart in |",
        "|---|---|---|---|---|---|---|",
        *[f"| {name} | {h['backlog']:,.0f} | {h['max_cpu_ms']:.2f} ms | {h['max_wall_ms']:.2f} ms | "
          f"{h['over_2ms']:.0f} of {h['callbacks']:,.0f} | {h['max_gc_cpu_ms']:.2f} ms | {h['drained_s']:.2f} s |"
          for name, h in holds.items()],
        "",
        *outage,
    ]


# The broker killed mid-run: what the proxied clients see -------------------------------
#
# A real `streamtap run` alone on CPU 0 (as in tests/bench/__main__.py; the upstream, the
# load client, the brokers and this process share the other CPUs), upstream.py pacing
# each answer as a model streams tokens, and load.py's `continuous` client. Per round,
# five runs, each with a fresh proxy and a fresh broker: no sink; a NATS sink with its
# broker up throughout; the same with the broker SIGKILLed KILL_AT s into the run and
# started again DOWN_FOR s later on the same port and data directory; the two for Redis.

SECONDS = 15.0  # of streaming per run
WARMUP = 1.0  # s at the start of each run left out of the figures
KILL_AT = 3.0
DOWN_FOR = 5.0
CONNS = 20
ANSWER_EVENTS = 100
EVERY_US = 20_000  # 50 events/s per stream: 1,000/s offered in all
POLL = 0.25  # s between /metrics samples (in every run, sink or not)
PROXY_CPUS = {0}
LOAD_CPUS = set(range(1, os.cpu_count() or 2)) or {0}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
CONDITIONS = ["none", "nats up", "nats killed", "redis up", "redis killed"]
WINDOWS = {"all": "whole run", "before": "before the kill", "down": "broker down",
           "after": "after the restart", "catchup": "… its first 2 s"}


class _Proxy:
    """`streamtap run` on CPU 0 with the bench's route, its output in proxy.log."""

    def __init__(self, work: Path, upstream_ca: Path, sink: str | None) -> None:
        self.port = free_port()
        self.ca = work / "certs" / "mitmproxy-ca-cert.pem"
        self.api = str(work / "api.sock")
        self.log_path = work / "proxy.log"
        self.spool = work / "spool"
        command = [STREAMTAP, "run", "--listen", f"127.0.0.1:{self.port}", "--certs", str(work / "certs"),
                   "--api-socket", self.api, "--route", "localhost=openai",
                   "--set", f"ssl_verify_upstream_trusted_ca={upstream_ca}"]
        if sink:
            command += ["--sink", sink, "--set", f"streamtap_sink_spool_dir={self.spool}"]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=work,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                         preexec_fn=lambda: os.sched_setaffinity(0, PROXY_CPUS))
        deadline = time.monotonic() + 30
        while not (self.ca.exists() and _connectable(("127.0.0.1", self.port)) and _connectable(self.api)):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("streamtap did not start:\n" + self.log())
            time.sleep(0.05)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def cpu_seconds(self) -> float:
        utime, stime = Path(f"/proc/{self.proc.pid}/stat").read_text().rpartition(")")[2].split()[11:13]
        return (int(utime) + int(stime)) / CLOCK_TICKS

    def counters(self) -> tuple[int, int, int]:
        """(events published, events the sink's broker confirmed, events the sink dropped)."""
        conn = UnixHTTPConnection(self.api, 5)
        try:
            conn.request("GET", "/metrics")
            text = conn.getresponse().read().decode()
        finally:
            conn.close()
        sums = dict.fromkeys(("streamtap_events_total", "streamtap_sink_sent_total",
                              "streamtap_sink_gap_events_total"), 0)
        for line in text.splitlines():
            if (name := line.partition("{")[0]) in sums:
                sums[name] += int(line.rsplit(" ", 1)[1])
        published, sent, gaps = sums.values()
        return published, sent, gaps

    def spool_left(self) -> int:
        """Bytes in the sink's spool that the broker has not confirmed."""
        spools = [d for d in self.spool.iterdir() if d.is_dir()] if self.spool.exists() else []
        left = 0
        for spool in spools:
            try:
                offset = int((spool / "acked").read_text().split()[1])
            except (OSError, IndexError, ValueError):
                offset = 0
            left += sum(p.stat().st_size for p in spool.glob("*.spool")) - offset
        return left

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _connectable(address: tuple[str, int] | str) -> bool:
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    with socket.socket(family) as s:
        try:
            s.connect(address)
        except OSError:
            return False
    return True


def _cpu_busy(cpus: set[int]) -> float:
    """Seconds these CPUs have been busy since boot (not idle, not waiting for IO), by anyone."""
    busy = 0
    for line in Path("/proc/stat").read_text().splitlines():
        name, *ticks = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            values = [int(t) for t in ticks[:8]]  # guest time is already in user
            busy += sum(values) - values[3] - values[4]
    return busy / CLOCK_TICKS


def _percentile(values: list[int], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


@dataclass
class OutageRun:
    condition: str
    start_ns: int
    client: dict = field(default_factory=dict)  # load.py's `continuous` result
    kill_ns: int = 0
    back_ns: int = 0  # the restarted broker listens again
    # (ns, proxy CPU s, published, confirmed, CPU 0 busy s by anyone)
    polls: list[tuple[int, float, int, int, float]] = field(default_factory=list)
    published: int = 0
    sent: int = 0
    gaps: int = 0
    spool_left: int = 0
    peak_backlog: int = 0  # published but not yet confirmed, at most: what the spool held
    resumed_s: float = float("nan")  # after the restart, until the sink's first confirmed batch
    caught_up_s: float = float("nan")  # after the restart, until the backlog was under one batch
    in_broker: int = 0  # distinct (instance, stream, seq) the broker holds
    duplicates: int = 0  # entries beyond those (JetStream drops a resend; Redis may keep one)
    warned: bool = False  # the sink logged "spooling until it is back"

    def spans(self, window: str) -> list[tuple[int, int]]:
        start, end = self.start_ns + int(WARMUP * 1e9), self.start_ns + int(SECONDS * 1e9)
        return {"all": [(start, end)], "before": [(start, self.kill_ns)], "down": [(self.kill_ns, self.back_ns)],
                "after": [(self.back_ns, end)], "catchup": [(self.back_ns, min(end, self.back_ns + 2 * 10**9))]}[window]

    def figures(self, window: str) -> dict[str, float]:
        """Of the events that arrived within the window: events/s, latency p50 and p99 (ms);
        the proxy's CPU and what others took of its CPU (%)."""
        spans = self.spans(window)
        latencies = [lat for t, lat in zip(self.client["arrived_ns"], self.client["latency_ns"], strict=True)
                     if any(a <= t < b for a, b in spans)]
        seconds = sum(b - a for a, b in spans) / 1e9
        cpu = others = 0.0
        for a, b in spans:
            first = min(self.polls, key=lambda p: abs(p[0] - a))
            last = min(self.polls, key=lambda p: abs(p[0] - b))
            scale = (b - a) / max(last[0] - first[0], 1)
            cpu += (last[1] - first[1]) * scale
            others += (last[4] - first[4] - (last[1] - first[1])) * scale
        return {"rate": len(latencies) / seconds, "p50": _percentile(latencies, 50) / 1e6,
                "p99": _percentile(latencies, 99) / 1e6, "cpu": cpu / seconds * 100,
                "per_event": cpu * 1e6 / max(len(latencies), 1), "others": max(0.0, others / seconds * 100)}

    def second_p50s(self, window: str) -> list[float]:
        """The latency p50 (ms) of each whole second of the window: how steady it is."""
        out = []
        for a, b in self.spans(window):
            for s in range(a, b - 10**9 + 1, 10**9):
                slice_ = [lat for t, lat in zip(self.client["arrived_ns"], self.client["latency_ns"], strict=True)
                          if s <= t < s + 10**9]
                if slice_:
                    out.append(_percentile(slice_, 50) / 1e6)
        return out


def _broker_for(condition: str, data: Path) -> tuple[Broker | None, str]:
    """The broker of a condition, and the sink URL without its port yet ({})."""
    if condition.startswith("nats"):
        return NatsServer(data), "{}/benchtap"
    if condition.startswith("redis"):
        return DefaultRedis(data), "{}?stream=benchtap"
    return None, ""


def outage_run(condition: str, work: Path, upstream_port: int, upstream_ca: Path) -> OutageRun:
    broker, sink = _broker_for(condition, work / "broker")
    proxy = None
    try:
        if isinstance(broker, NatsServer | RedisServer):
            broker.start()
            sink = sink.format(broker.url)
        proxy = _Proxy(work, upstream_ca, sink or None)
        result = work / "load.json"  # a file, not a pipe: it is written while this process polls
        with result.open("wb") as out:
            load = subprocess.Popen(
                [sys.executable, "-m", "tests.bench.load", "--port", str(upstream_port), "--cafile", str(upstream_ca),
                 "--proxy", f"127.0.0.1:{proxy.port}", "--cafile", str(proxy.ca), "continuous",
                 "--conns", str(CONNS), "--seconds", str(SECONDS), "--events", str(ANSWER_EVENTS),
                 "--every", str(EVERY_US)],
                stdout=out, stderr=subprocess.PIPE, text=True)
        assert load.stderr is not None
        if load.stderr.readline().strip() != "ready":  # its connections are open: streaming starts
            load.kill()
            raise RuntimeError(f"{condition}: the load client did not start: {load.communicate()[1][-3000:]}")
        run = OutageRun(condition, time.monotonic_ns())
        killing = broker is not None and condition.endswith("killed")
        while load.poll() is None:
            now = time.monotonic_ns()
            if killing and broker is not None and broker.proc is not None and not run.kill_ns \
                    and now >= run.start_ns + KILL_AT * 1e9:
                broker.proc.kill()  # SIGKILL, to the PID started above
                broker.proc.wait()
                run.kill_ns = time.monotonic_ns()
            elif killing and broker is not None and run.kill_ns and not run.back_ns \
                    and now >= run.kill_ns + DOWN_FOR * 1e9:
                broker.start()  # the same port and data directory; returns once it listens
                run.back_ns = time.monotonic_ns()
            published, sent, _ = proxy.counters()
            run.polls.append((time.monotonic_ns(), proxy.cpu_seconds(), published, sent, _cpu_busy(PROXY_CPUS)))
            time.sleep(POLL)
        err = load.communicate()[1]
        if load.returncode != 0:
            raise RuntimeError(f"{condition}: the load client failed:\n{err[-3000:]}")
        run.client = json.loads(result.read_text())
        run.published, run.sent, run.gaps = proxy.counters()
        if broker is not None:
            deadline = time.monotonic() + 30  # the sink catches up on the rest
            while run.sent + run.gaps < run.published and time.monotonic() < deadline:
                time.sleep(0.05)
                run.published, run.sent, run.gaps = proxy.counters()
            run.spool_left = proxy.spool_left()
            run.peak_backlog = max(p - s for _, _, p, s, _ in run.polls)
            if run.back_ns:
                after = [(t, p, s) for t, _, p, s, _ in run.polls if t > run.back_ns]
                at_restart = max((s for t, _, _, s, _ in run.polls if t <= run.back_ns), default=0)
                run.resumed_s = next(((t - run.back_ns) / 1e9 for t, _, s in after if s > at_restart), float("nan"))
                run.caught_up_s = next(((t - run.back_ns) / 1e9 for t, p, s in after if p - s < BATCH), float("nan"))
            run.warned = "spooling until it is back" in proxy.log()
    finally:
        if proxy is not None:
            proxy.stop()
    if broker is not None:
        try:
            run.in_broker, run.duplicates = (_nats_contents(broker.url, "BENCHTAP")
                                             if isinstance(broker, NatsServer)
                                             else _redis_contents(broker.url, "benchtap"))
        finally:
            broker.stop()
    return run


def _nats_contents(url: str, stream: str) -> tuple[int, int]:
    """(distinct Nats-Msg-Id, messages beyond those) in the JetStream stream."""

    async def read() -> tuple[int, int]:
        import nats
        from nats.js.api import AckPolicy, ConsumerConfig

        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            total = (await js.stream_info(stream)).state.messages
            sub = await js.pull_subscribe(">", stream=stream, config=ConsumerConfig(ack_policy=AckPolicy.NONE))
            ids: set[str] = set()
            got = 0
            while got < total:
                for m in await sub.fetch(min(total - got, 5000), timeout=10):
                    ids.add((m.headers or {}).get("Nats-Msg-Id", ""))
                    got += 1
            return len(ids), got - len(ids)
        finally:
            await nc.close()

    return asyncio.run(read())


def _redis_contents(url: str, key: str) -> tuple[int, int]:
    """(distinct (instance, stream, seq), entries beyond those) in the Redis stream."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        seen: set[tuple[bytes, bytes, bytes]] = set()
        total = 0
        start = "-"
        while entries := client.xrange(key, min=start, count=10_000):
            seen.update((f[b"instance"], f[b"stream"], f[b"seq"]) for _, f in entries)
            total += len(entries)
            start = "(" + entries[-1][0].decode()
        return len(seen), total - len(seen)
    finally:
        client.close()


def broker_outage(rounds: int = 1) -> dict[str, list[OutageRun]]:
    """`rounds` rounds of the five conditions, their order rotated each round."""
    runs: dict[str, list[OutageRun]] = {c: [] for c in CONDITIONS}
    affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, LOAD_CPUS)  # inherited by the upstream, the load client and the brokers
    try:
        with tempfile.TemporaryDirectory(prefix="streamtap-bench-outage-") as tmp:
            pki = make_pki(Path(tmp) / "pki", ["localhost", "127.0.0.2"])
            upstream = subprocess.Popen(
                [sys.executable, "-m", "tests.bench.upstream", str(pki.leaf_cert), str(pki.leaf_key)],
                stdout=subprocess.PIPE, text=True)
            try:
                assert upstream.stdout is not None
                port = int(upstream.stdout.readline())
                for r in range(rounds):
                    for i in range(len(CONDITIONS)):
                        condition = CONDITIONS[(i + r) % len(CONDITIONS)]
                        work = Path(tmp) / f"{r}-{condition.replace(' ', '-')}"
                        work.mkdir()
                        run = outage_run(condition, work, port, pki.ca_cert)
                        runs[condition].append(run)
                        shutil.rmtree(work, ignore_errors=True)
                        f, c = run.figures("all"), run.client
                        print(f"sink outage {r + 1}/{rounds} {condition:12} {f['rate']:5,.0f} events/s  "
                              f"p50 {f['p50']:6.2f} ms  p99 {f['p99']:7.2f} ms  proxy CPU {f['cpu']:3.0f}% "
                              f"({f['per_event']:3.0f} µs/event)  "
                              f"others on its CPU {f['others']:3.0f}%  "
                              f"bytes {'same' if c['bytes_received'] == c['bytes_sent'] else 'DIFFER'}  "
                              f"published {run.published:,}  confirmed {run.sent:,}  in broker {run.in_broker:,} "
                              f"(+{run.duplicates})  gaps {run.gaps}  peak backlog {run.peak_backlog:,}"
                              + (f"  resumed {run.resumed_s:.2f} s after the restart, caught up {run.caught_up_s:.2f} s, "
                                 f"warned {run.warned}" if run.back_ns else ""),
                              file=sys.stderr)
            finally:
                upstream.terminate()
                upstream.wait()
    finally:
        os.sched_setaffinity(0, affinity)
    return runs


def _spread(values: list[float], digits: int = 2) -> str:
    """One value, or the median (min–max) of several."""
    values = [v for v in values if v == v]
    if not values:
        return "–"
    mid = f"{statistics.median(values):,.{digits}f}"
    return mid if len(values) == 1 else f"{mid} ({min(values):,.{digits}f}–{max(values):,.{digits}f})"


def _names(condition: str) -> tuple[str, str]:
    if condition == "none":
        return "none", "–"
    sink, state = condition.split()
    return ({"nats": "NATS", "redis": "Redis"}[sink],
            "up throughout" if state == "up" else f"killed at {KILL_AT:g} s, back {DOWN_FOR:g} s later")


def broker_outage_lines(rounds: int | None = None) -> list[str]:
    rounds = rounds if rounds is not None else int(os.environ.get("BENCH_SINK_ROUNDS", "1"))
    runs = broker_outage(rounds)
    lines = [
        "## Sinks: the broker killed mid-run, as the proxied clients see it",
        "",
        f"tests/bench/sinks.py, end to end: a real `streamtap run` alone on CPU 0; {CONNS} client connections",
        f"(load.py `continuous`, keep-alive) each streaming answers of {ANSWER_EVENTS} events back to back for",
        f"{SECONDS:g} s, the loopback upstream writing one event per {EVERY_US / 1000:g} ms on each "
        f"({CONNS * 1e6 / EVERY_US:,.0f} events/s offered,",
        "as models stream tokens). A fresh proxy and broker for each run: no sink; a sink whose",
        f"broker stays up; a sink whose broker is SIGKILLed {KILL_AT:g} s into the run and started again",
        f"{DOWN_FOR:g} s later on the same port and data directory (Redis with appendfsync everysec, its",
        "default). Latency: from the upstream's timestamp inside each event to its arrival at the",
        f"client. The first {WARMUP:g} s of each run are left out. \"p50 per second\": the spread of the",
        "median over the window's whole seconds. Proxy CPU: its share of CPU 0 (from /proc), and per",
        "event the clients got; \"others\": what other processes of the machine took of CPU 0 meanwhile",
        "(noise the proxy could not avoid). Bytes: the body bytes the clients received",
        "against those the upstream wrote, over the whole run."
        + (f" Medians of {rounds} interleaved rounds (min–max)." if rounds > 1 else " One round."),
        "",
        "| sink | broker | window | events/s | client p50 ms | client p99 ms | p50 per second, ms "
        "| proxy CPU % | proxy CPU µs/event | others % | bytes received = sent |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for condition in CONDITIONS:
        group = runs[condition]
        same = all(r.client["bytes_received"] == r.client["bytes_sent"]
                   and r.client["events"] == r.client["events_sent"] for r in group)
        total = statistics.median(r.client["bytes_received"] for r in group)
        sink, broker = _names(condition)
        windows = ["all", "before", "down", "after", "catchup"] if condition.endswith("killed") else ["all"]
        for window in windows:
            figures = [r.figures(window) for r in group]
            per_second = [p for r in group for p in r.second_p50s(window)]
            spread = f"{min(per_second):.2f}–{max(per_second):.2f}" if per_second else "–"
            check = (f"{'✅' if same else '❌'} {total / 2**20:.1f} MiB" if window == "all" else "")
            lines.append(
                f"| {sink} | {broker} | {WINDOWS[window]} | {_spread([f['rate'] for f in figures], 0)} | "
                f"{_spread([f['p50'] for f in figures])} | {_spread([f['p99'] for f in figures])} | {spread} | "
                f"{_spread([f['cpu'] for f in figures], 0)} | {_spread([f['per_event'] for f in figures], 0)} | "
                f"{_spread([f['others'] for f in figures], 0)} | "
                f"{check} |")
    lines += [
        "",
        "What the sinks did: events the hub published; confirmed by the broker (/metrics",
        "`streamtap_sink_sent_total`, after the run once the sink caught up); the backlog at its",
        "highest (published, not yet confirmed: what the spool held; sampled every "
        f"{POLL:g} s); dropped for a",
        "full spool (`streamtap_sink_gap_events_total`); spool bytes left unconfirmed; after the",
        "restart, seconds until the first batch was confirmed and until the backlog was under one",
        f"batch ({BATCH}); what the broker holds, distinct (instance, stream, seq), and entries beyond",
        "those (duplicates: JetStream drops a resend by its Nats-Msg-Id; a Redis consumer dedups).",
        "",
        "| sink | broker | published | confirmed | peak backlog | gaps | spool left | resumed after "
        "| caught up after | in broker, distinct | duplicates |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def seconds(value: float) -> str:
        return "–" if value != value else f"{value:.2f} s"

    for condition in CONDITIONS[1:]:
        sink, broker = _names(condition)
        for r in runs[condition]:
            lines.append(
                f"| {sink} | {broker} | {r.published:,} | {r.sent:,} | {r.peak_backlog:,} | {r.gaps} | "
                f"{r.spool_left:,} B | {seconds(r.resumed_s)} | {seconds(r.caught_up_s)} | "
                f"{r.in_broker:,} {'✅' if r.in_broker == r.published else '❌'} | {r.duplicates} |")
    return lines


if __name__ == "__main__":
    report = measure()
    print("\n".join(report))
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text("\n".join(report) + "\n")

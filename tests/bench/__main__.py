"""`make bench`: streamtap next to plain mitmdump, end to end on loopback.

For each workload and each setup (direct, plain mitmdump, streamtap on asyncio and on
uvloop) a fresh proxy process is started, a reader follows streamtap's API, and the load
client (its own process) runs the workload against the local HTTPS upstream. Each
figure is the median of BENCH_RUNS runs (default 3). The table and the targets are
printed and written to the file given, with the tap path's own in-process figures:
`make bench` gives run/benchmarks.md (untracked), `BENCH_OUT=docs/benchmarks.md make
bench` updates the documented figures.

    python -m tests.bench [OUT.md] [--only a,b,...] [--runs N] [--profile DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.bench import handoff_cost, replay, sinks, tap_path, websocket
from tests.bench.upstream import big_body
from tests.support.api_http import get_json
from tests.support.pki import make_pki

BIN = Path(sys.executable).parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
# "mitmdump" streams every body (stream_large_bodies=1), as streamtap must: the fair
# floor, and the baseline of every ratio. "mitmdump buffered" is its default (whole
# bodies held, then sent), for information, on the workloads that say so.
SETUPS = ["direct", "mitmdump buffered", "mitmdump", "streamtap asyncio", "streamtap uvloop", "streamtap decoder"]
# "streamtap decoder": uvloop, with the decoder process on (capture.decoder_process); that
# process runs beside the load, on the other CPUs, and its CPU is counted apart.
DECODER_SETUP = "streamtap decoder"
DEFAULT_SETUP = "streamtap uvloop"  # what `streamtap run` uses
# The proxy gets a core of its own; the upstream, the load client and the API reader
# share the others, so that what the proxy costs is not blurred by who ran when.
PROXY_CPUS = {0}
LOAD_CPUS = set(range(1, os.cpu_count() or 2)) or {0}


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    args: list[str]
    streams: int  # stream.end events the API reader waits for
    events: int = 0  # known in advance for /big; counted by the client otherwise
    streamtap_args: tuple[str, ...] = ()
    setups: tuple[str, ...] = ()  # only these (none: every setup asked for)
    rss_every: float = 0.0  # seconds between samples of the proxy's RSS (0: peak only)
    once: bool = False  # in the first run only (a long one)


def big_events(mb: int) -> int:
    return big_body(mb).count(b"data: ") - 1  # less [DONE]


# (c) runs with buffers that both sizes fill (a 10,000-event ring, a reassembled
# message of 1M characters): peak memory then shows whether anything else grows with
# the stream itself.
IN_PROCESS = tuple(s for s in SETUPS if s != DECODER_SETUP)  # (c) and (d) say nothing new about it
SMALL_BUFFERS = ("--set", "streamtap_buffer_events=10000", "--set", "streamtap_max_message_chars=1000000")

WORKLOADS = [
    Workload("a", "1 stream × 10,000 events", ["stream", "--conns", "1", "--events", "10000"], 1),
    Workload("b", "50 streams × 1,000 events", ["stream", "--conns", "50", "--events", "1000"], 50),
    Workload("c5", "5 MB stream", ["big", "--mb", "5"], 1, big_events(5), SMALL_BUFFERS, setups=IN_PROCESS),
    Workload("c50", "50 MB stream", ["big", "--mb", "50"], 1, big_events(50), SMALL_BUFFERS, setups=IN_PROCESS),
    Workload("c5gz", "5 MB stream, gzip", ["big", "--mb", "5", "--coding", "gzip"], 1, big_events(5), SMALL_BUFFERS,
             setups=IN_PROCESS),
    Workload("c50gz", "50 MB stream, gzip", ["big", "--mb", "50", "--coding", "gzip"], 1, big_events(50),
             SMALL_BUFFERS, setups=IN_PROCESS),
    Workload("d", "passthrough: 200 new connections/s × 5 s", ["short", "--rate", "200", "--seconds", "5"], 0,
             setups=IN_PROCESS),
    # Issue 19's two cases: the worst (every event its own write, 30 clients at once) and
    # the realistic (gzip, several events per write, as the providers send them).
    Workload("e", "30 streams × 600 events, a write each", ["stream", "--conns", "30", "--events", "600"], 30,
             setups=("mitmdump buffered", "mitmdump", "streamtap asyncio", "streamtap uvloop", DECODER_SETUP)),
    Workload("f", "30 streams × 600 events, gzip, 8 a write",
             ["stream", "--conns", "30", "--events", "600", "--batch", "8", "--coding", "gzip"], 30,
             setups=("mitmdump buffered", "mitmdump", "streamtap asyncio", "streamtap uvloop", DECODER_SETUP)),
    # Memory over an hour's worth of events through the default ring (100,000 events) and
    # the default 1,000 stream records: answers of 500 events back to back on 50
    # connections for 125 s, about 2,200 streams and 1,100,000 events here. The ring is
    # full after a tenth of it, the records after about half: memory is judged after that.
    Workload("soak", "125 s of answers of 500 events on 50 connections",
             ["continuous", "--conns", "50", "--seconds", "125", "--events", "500", "--every", "0"], 0,
             setups=(DEFAULT_SETUP,), rss_every=0.5, once=True),
]


@dataclass
class Sample:
    wall: float
    events: int
    cpu: float
    peak_rss: int
    client_latency: list[int] = field(default_factory=list)  # ns, per event or request
    reader_latency: list[int] = field(default_factory=list)
    reader_behind_client: list[int] = field(default_factory=list)  # ns, per event
    failures: int = 0
    decoder_cpu: float = 0.0  # the decoder process's, when it runs
    reader_missed: int = 0  # events the client got that the API reader never saw
    rss_series: list[tuple[float, int]] = field(default_factory=list)  # (seconds from start, bytes)


def pin(cpus: set[int]):
    """For Popen: run the child on these CPUs only."""
    return lambda: os.sched_setaffinity(0, cpus)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(ready, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.02)


def connectable(address) -> bool:
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    with socket.socket(family) as s:
        try:
            s.connect(address)
        except OSError:
            return False
    return True


class Proxy:
    """A proxy process of one setup, started fresh for one measurement."""

    def __init__(
        self, setup: str, work: Path, upstream_ca: Path, profile: Path | None, streamtap_args: tuple[str, ...] = ()
    ) -> None:
        self.setup = setup
        self.port = free_port()
        self.api_socket: str | None = None
        listen = ["--listen", f"127.0.0.1:{self.port}"]
        if setup.startswith("mitmdump"):
            # Plain mitmproxy, no addon: streams every body (unless buffered) and passes
            # the unrouted host through, as streamtap does.
            self.ca = work / "mitm" / "mitmproxy-ca-cert.pem"
            streaming = [] if setup == "mitmdump buffered" else ["--set", "stream_large_bodies=1"]
            command = [str(BIN / "mitmdump"), "-q", "--listen-host", "127.0.0.1", "--listen-port", str(self.port),
                       "--set", f"confdir={work / 'mitm'}", *streaming, "--ignore-hosts", r"^127\.0\.0\.2:"]
        else:
            loop = "uvloop" if setup == DECODER_SETUP else setup.split()[1]
            if setup == DECODER_SETUP:
                streamtap_args = ("--set", "streamtap_decoder_process=on", *streamtap_args)
            self.ca = work / "certs" / "mitmproxy-ca-cert.pem"
            self.api_socket = str(work / "api.sock")
            command = [str(BIN / "streamtap"), "run", *listen, "--certs", str(work / "certs"),
                       "--api-socket", self.api_socket, "--loop", loop, "--route", "localhost=openai", *streamtap_args]
        command += ["--set", f"ssl_verify_upstream_trusted_ca={upstream_ca}"]
        if profile is not None:
            out = profile / f"{setup.replace(' ', '-')}-{time.monotonic_ns()}.prof"
            command = [sys.executable, "-m", "cProfile", "-o", str(out), *command]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=work,
                                     preexec_fn=pin(PROXY_CPUS))
        wait_until(lambda: connectable(("127.0.0.1", self.port)) and self.ca.exists(), f"{setup} to listen")
        self.decoder_pid: int | None = None
        if self.api_socket:
            wait_until(lambda: connectable(self.api_socket), f"{setup}'s API")
            if setup == DECODER_SETUP:
                self.decoder_pid = get_json(self.api_socket, "/healthz")["process"]
                assert self.decoder_pid != self.proc.pid
                os.sched_setaffinity(self.decoder_pid, LOAD_CPUS)  # it inherited the proxy's CPU

    def cpu_seconds(self, pid: int | None = None) -> float:
        stat = Path(f"/proc/{pid or self.proc.pid}/stat").read_text()
        utime, stime = stat.rpartition(")")[2].split()[11:13]
        return (int(utime) + int(stime)) / CLOCK_TICKS

    def peak_rss(self) -> int:
        return self._status("VmHWM:")

    def rss(self) -> int:
        return self._status("VmRSS:")

    def _status(self, key: str) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) * 1024
        return 0

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def measure(
    setup: str, workload: Workload, upstream_port: int, upstream_ca: Path, profile: Path | None, with_reader: bool
) -> Sample:
    with tempfile.TemporaryDirectory(prefix="streamtap-bench-") as tmp:
        work = Path(tmp)
        proxy = Proxy(setup, work, upstream_ca, profile, workload.streamtap_args) if setup != "direct" else None
        try:
            reader = None
            if proxy is not None and proxy.api_socket and workload.streams and with_reader:
                reader = subprocess.Popen(
                    [sys.executable, "-m", "tests.bench.subscriber", proxy.api_socket, str(workload.streams)],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=pin(LOAD_CPUS),
                )
                assert reader.stderr is not None
                if reader.stderr.readline().strip() != "ready":
                    raise RuntimeError("the API reader did not start: " + reader.stderr.read())
            cpu_before = proxy.cpu_seconds() if proxy else 0.0
            decoder_before = proxy.cpu_seconds(proxy.decoder_pid) if proxy and proxy.decoder_pid else 0.0
            command = [sys.executable, "-m", "tests.bench.load", "--port", str(upstream_port),
                       "--cafile", str(upstream_ca)]
            if proxy is not None:
                command += ["--proxy", f"127.0.0.1:{proxy.port}", "--cafile", str(proxy.ca)]
            series: list[tuple[float, int]] = []
            sampling = threading.Event()
            if proxy is not None and workload.rss_every:
                threading.Thread(target=sample_rss, args=(proxy, workload.rss_every, series, sampling),
                                 daemon=True).start()
            try:
                done = subprocess.run([*command, *workload.args], capture_output=True, text=True, timeout=900,
                                      preexec_fn=pin(LOAD_CPUS))
            finally:
                sampling.set()
            if done.returncode != 0:
                raise RuntimeError(f"{setup} {workload.key}: load client failed:\n{done.stderr[-3000:]}")
            client = json.loads(done.stdout)
            read = None
            if reader is not None:
                out, err = reader.communicate(timeout=120)
                if reader.returncode != 0:
                    raise RuntimeError(f"{setup} {workload.key}: API reader failed:\n{err[-3000:]}")
                read = json.loads(out)
            cpu = proxy.cpu_seconds() - cpu_before if proxy else 0.0
            decoder_cpu = proxy.cpu_seconds(proxy.decoder_pid) - decoder_before if proxy and proxy.decoder_pid else 0.0
            peak = proxy.peak_rss() if proxy else 0
        finally:
            if proxy is not None:
                proxy.stop()
    sample = Sample(client["wall"], workload.events or client.get("events", client.get("requests", 0)), cpu, peak,
                    client.get("latency_ns", []), failures=len(client.get("failures", [])), rss_series=series,
                    decoder_cpu=decoder_cpu)
    if read is not None and client.get("arrivals"):
        sample.reader_latency = read["latency_ns"]
        arrivals = client["arrivals"]
        reader_arrivals = read["arrivals"]
        sample.reader_missed = sum(1 for k in arrivals if k not in reader_arrivals)
        sample.reader_behind_client = [reader_arrivals[k] - t for k, t in arrivals.items() if k in reader_arrivals]
    return sample


def sample_rss(proxy: Proxy, every: float, series: list[tuple[float, int]], stop: threading.Event) -> None:
    start = time.monotonic()
    while not stop.wait(every):
        series.append((time.monotonic() - start, proxy.rss()))


def percentile(values: list[int], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


@dataclass
class Figures:
    """Medians over runs of one (workload, setup)."""

    wall: float
    events_per_s: float
    cpu: float
    peak_rss_mb: float
    client_p50: float  # ms
    client_p99: float
    reader_p50: float
    reader_p99: float
    behind_p99: float
    failures: int
    decoder_cpu: float = 0.0
    wall_min: float = float("nan")
    wall_max: float = float("nan")


def summarise(samples: list[Sample]) -> Figures:
    med = statistics.median

    def ms(values: list[list[int]], p: float) -> float:
        got = [percentile(v, p) / 1e6 for v in values if v]
        return med(got) if got else float("nan")

    return Figures(
        wall=med(s.wall for s in samples),
        events_per_s=med(s.events / s.wall for s in samples),
        cpu=med(s.cpu for s in samples),
        peak_rss_mb=med(s.peak_rss for s in samples) / 2**20,
        client_p50=ms([s.client_latency for s in samples], 50),
        client_p99=ms([s.client_latency for s in samples], 99),
        reader_p50=ms([s.reader_latency for s in samples], 50),
        reader_p99=ms([s.reader_latency for s in samples], 99),
        behind_p99=ms([s.reader_behind_client for s in samples], 99),
        failures=sum(s.failures for s in samples),
        decoder_cpu=med(s.decoder_cpu for s in samples),
        wall_min=min(s.wall for s in samples),
        wall_max=max(s.wall for s in samples),
    )


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    memory = next((int(line.split()[1]) // 2**20 for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal")), 0)
    import mitmproxy.version

    return (f"{os.cpu_count()} vCPU {model}, {memory} GiB, Linux {platform.release()}, "
            f"Python {platform.python_version()}, mitmproxy {mitmproxy.version.VERSION}")


def fmt(value: float, digits: int = 2) -> str:
    return "–" if value != value else f"{value:,.{digits}f}"  # NaN: not measured


def report(results: dict[tuple[str, str], Figures], runs: int, setups: list[str]) -> list[str]:
    lines = [
        "## End to end: direct, plain mitmdump and streamtap",
        "",
        f"Machine: {machine()}. The proxy runs alone on CPU 0; the upstream, the load client and",
        "the API reader share the other CPUs. Medians of "
        f"{runs} runs; a fresh proxy per measurement. Latency is from the upstream's timestamp inside",
        "each event (taken just before its write) to its arrival at the load client, and at the",
        "API reader (an SSE follower of /v1/events); \"reader behind\" is, per event, reader",
        "arrival minus client arrival. For (d), latency is per request (connect to last byte).",
        "",
        "| workload | setup | wall s (min–max) | vs mitmdump | events/s | proxy CPU s | CPU vs mitmdump | peak RSS MB "
        "| client p50/p99 ms | reader p50/p99 ms | reader behind p99 ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for w in WORKLOADS:
        base = results.get((w.key, "mitmdump"))
        for setup in setups:
            f = results.get((w.key, setup))
            if f is None:
                continue
            vs = fmt(f.wall / base.wall) if base and setup != "direct" else "–"
            cpu_vs = fmt(f.cpu / base.cpu) if base and base.cpu and setup != "direct" else "–"
            rate = fmt(f.events_per_s, 0) if w.key != "d" else f"{fmt(f.events_per_s, 0)} req/s"
            lines.append(
                f"| {w.key}: {w.title} | {setup} | {fmt(f.wall)} ({fmt(f.wall_min)}–{fmt(f.wall_max)}) | {vs} | {rate} | "
                f"{fmt(f.cpu) if setup != 'direct' else '–'} | {cpu_vs} | "
                f"{fmt(f.peak_rss_mb, 0) if setup != 'direct' else '–'} | "
                f"{fmt(f.client_p50)} / {fmt(f.client_p99)} | {fmt(f.reader_p50)} / {fmt(f.reader_p99)} | "
                f"{fmt(f.behind_p99)} |"
            )
    return lines


def targets(results: dict[tuple[str, str], Figures]) -> list[str]:
    lines = ["", "### Targets", ""]

    def check(ok: bool, text: str) -> None:
        lines.append(f"- {'✅' if ok else '❌'} {text}")

    for setup in ("streamtap uvloop", "streamtap asyncio", DECODER_SETUP):
        for key in ("a", "b"):
            f, base = results.get((key, setup)), results.get((key, "mitmdump"))
            if f and base:
                ratio = f.wall / base.wall
                check(ratio <= 1.10, f"({key}) {setup} / mitmdump wall time: {ratio:.2f} (target <= 1.10)")
    for key in ("a", "b"):
        f = results.get((key, DEFAULT_SETUP))
        if f:
            check(f.behind_p99 <= 2.0,
                  f"({key}) API reader behind the client, p99: {f.behind_p99:.2f} ms (target <= 2 ms)")
    for coding in ("", "gz"):
        small, large = results.get((f"c5{coding}", DEFAULT_SETUP)), results.get((f"c50{coding}", DEFAULT_SETUP))
        if small and large:
            scale = large.wall / small.wall
            label = "gzip" if coding else "plain"
            check(9.0 <= scale <= 11.0, f"(c, {label}) 50 MB / 5 MB wall time: {scale:.2f}x (target 10x ± 10%); "
                  f"peak RSS {small.peak_rss_mb:.0f} MB vs {large.peak_rss_mb:.0f} MB")
    f, base = results.get(("d", DEFAULT_SETUP)), results.get(("d", "mitmdump"))
    if f and base:
        # Judged on CPU and the median: the p99 of 1,000 handshakes is the 10th slowest,
        # which moves by several ms between identical runs (it is in the table).
        ratio = f.cpu / base.cpu if base.cpu else float("nan")
        check(ratio <= 1.10 and f.client_p50 <= base.client_p50 * 1.10 and not f.failures,
              f"(d) passthrough: proxy CPU {f.cpu:.2f} s vs {base.cpu:.2f} s ({ratio:.2f}x), request p50 "
              f"{f.client_p50:.2f} ms vs {base.client_p50:.2f} ms (p99 {f.client_p99:.1f} vs "
              f"{base.client_p99:.1f}), {f.failures} failed")
    return lines


def round_two(samples: dict[tuple[str, str], list[Sample]], results: dict[tuple[str, str], Figures]) -> list[str]:
    """Issue 19's targets: the worst case (e) and the realistic one (f) against streaming
    mitmdump, the reader's delay, the loop (paired run by run), memory over a soak."""
    lines = ["", "### Targets, second round", ""]

    def check(ok: bool, text: str) -> None:
        lines.append(f"- {'✅' if ok else '❌'} {text}")

    def paired(key: str, setup: str, base: str) -> list[float]:
        return [a.wall / b.wall for a, b in zip(samples.get((key, setup), []), samples.get((key, base), []),
                                                 strict=False)]

    for key, goal in (("e", 1.10), ("f", 1.03)):
        for setup in ("streamtap uvloop", "streamtap asyncio", DECODER_SETUP):
            ratios = paired(key, setup, "mitmdump")
            if ratios:
                med = statistics.median(ratios)
                check(med <= goal, f"({key}) {setup} / streaming mitmdump wall time: {med:.2f} "
                      f"(runs {min(ratios):.2f}–{max(ratios):.2f}; target <= {goal:.2f})")
        for setup in (DEFAULT_SETUP, DECODER_SETUP):
            if f := results.get((key, setup)):
                check(f.behind_p99 <= 1.0, f"({key}) {setup}: API reader behind the client, p99: "
                      f"{f.behind_p99:.2f} ms (target <= 1 ms)")
        if f := results.get((key, DECODER_SETUP)):
            lines.append(f"- ℹ️ ({key}) {DECODER_SETUP}: proxy CPU {f.cpu:.2f} s, decoder process CPU "
                         f"{f.decoder_cpu:.2f} s")
        buffered, streaming = results.get((key, "mitmdump buffered")), results.get((key, "mitmdump"))
        if buffered and streaming:
            lines.append(f"- ℹ️ ({key}) streaming mitmdump / buffered mitmdump wall time: "
                         f"{streaming.wall / buffered.wall:.2f}")
    for key in ("a", "b", "e", "f"):
        ratios = paired(key, "streamtap uvloop", "streamtap asyncio")
        if ratios:
            med = statistics.median(ratios)
            faster = "uvloop" if med < 1 else "asyncio"
            lines.append(f"- ℹ️ ({key}) uvloop / asyncio wall time, run by run: median {med:.3f} "
                         f"({min(ratios):.3f}–{max(ratios):.3f} over {len(ratios)} runs): {faster} faster")
    for (key, setup), group in samples.items():
        series = [x for s in group for x in [s.rss_series] if x]
        if not series:
            continue
        one = series[0]
        end = one[-1][0]
        marks = [next((rss for t, rss in one if t >= end * q), one[-1][1]) for q in (0.1, 0.25, 0.5, 0.75, 1.0)]
        mb = " / ".join(f"{m / 2**20:.0f}" for m in marks)
        grew = (marks[-1] - marks[2]) / 2**20
        events = statistics.median(s.events for s in group)
        check(abs(grew) <= 10, f"({key}) {setup}, {events:,.0f} events: RSS at 10/25/50/75/100% of {end:.0f} s: "
              f"{mb} MB; {grew:+.0f} MB from half way to the end, once the ring and the stream records are "
              "full (target: flat, within 10 MB)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench")
    parser.add_argument("out", nargs="?", help="write the report here (make bench: run/benchmarks.md; "
                        "docs/benchmarks.md to update the documented figures)")
    parser.add_argument("--only", help="comma-separated workload keys (a,b,c5,c50,c5gz,c50gz,d,e,f,soak)")
    parser.add_argument("--setups", help="comma-separated setups, of: " + ", ".join(SETUPS))
    parser.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_RUNS", "3")))
    parser.add_argument("--profile", type=Path, help="run the proxies under cProfile, writing .prof files here")
    parser.add_argument("--no-reader", action="store_true", help="no API reader (what the readers cost)")
    parser.add_argument("--no-tap-path", action="store_true", help="skip the in-process figures (tap path, replay)")
    args = parser.parse_args()
    os.sched_setaffinity(0, LOAD_CPUS)
    workloads = [w for w in WORKLOADS if not args.only or w.key in args.only.split(",")]
    # "streamtap-uvloop" as well as "streamtap uvloop": no quoting needed
    setups = [s.strip().replace("-", " ") for s in args.setups.split(",")] if args.setups else SETUPS
    if unknown := [s for s in setups if s not in SETUPS]:
        parser.error(f"--setups: unknown {', '.join(unknown)} (of: {', '.join(SETUPS)})")
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)

    tap_lines = [] if args.no_tap_path else [*tap_path.measure(), "", *replay.measure(), "", *sinks.measure(),
                                             "", *websocket.measure(), "", *handoff_cost.measure()]
    samples: dict[tuple[str, str], list[Sample]] = {}
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="streamtap-bench-pki-") as tmp:
        pki = make_pki(Path(tmp), ["localhost", "127.0.0.2"])
        big = sorted({int(w.args[w.args.index("--mb") + 1]) for w in workloads if "--mb" in w.args})
        upstream = subprocess.Popen(
            [sys.executable, "-m", "tests.bench.upstream", str(pki.leaf_cert), str(pki.leaf_key), *map(str, big)],
            stdout=subprocess.PIPE, text=True, preexec_fn=pin(LOAD_CPUS),
        )
        try:
            assert upstream.stdout is not None
            port = int(upstream.stdout.readline())
            for run in range(args.runs):
                for w in workloads:
                    if w.once and run:
                        continue
                    # Interleaved, and in the other order every other run: a drift of the
                    # host's speed then falls on every setup alike.
                    order = [x for x in setups if not w.setups or x in w.setups]
                    for setup in order if run % 2 == 0 else order[::-1]:
                        try:
                            s = measure(setup, w, port, pki.ca_cert, args.profile, not args.no_reader)
                        except (RuntimeError, subprocess.TimeoutExpired) as e:  # one failure: the rest still runs
                            print(f"run {run + 1}/{args.runs} {w.key:5} {setup:18} FAILED: {e}"[:2000], file=sys.stderr)
                            failed.append(f"{w.key} {setup} (run {run + 1}): {str(e).strip().splitlines()[-1]}")
                            continue
                        samples.setdefault((w.key, setup), []).append(s)
                        print(f"run {run + 1}/{args.runs} {w.key:5} {setup:18} wall {s.wall:6.2f} s  "
                              f"cpu {s.cpu:6.2f} s  rss {s.peak_rss / 2**20:5.0f} MB  "
                              f"behind p99 {percentile(s.reader_behind_client, 99) / 1e6:6.1f} ms  "
                              f"missed {s.reader_missed}", file=sys.stderr)
        finally:
            upstream.terminate()
            upstream.wait()
    results = {key: summarise(group) for key, group in samples.items()}
    lines = report(results, args.runs, setups) + targets(results) + round_two(samples, results)
    lines += ["", "Measurements that failed: " + "; ".join(failed)] if failed else []
    print("\n".join(lines))
    if args.out:
        write_figures(Path(args.out), [*lines, "", *tap_lines])
        print(f"wrote the figures to {args.out}", file=sys.stderr)


BEGIN, END = "<!-- make bench: begin -->", "<!-- make bench: end -->"


def write_figures(path: Path, lines: list[str]) -> None:
    """Put the figures between the markers, keeping the hand-written text around them."""
    figures = "\n".join([BEGIN, *lines, END])
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)  # run/ is the API socket's directory too
    text = path.read_text() if path.exists() else ""
    if BEGIN in text and END in text:
        head, _, rest = text.partition(BEGIN)
        _, _, tail = rest.partition(END)
        text = head + figures + tail
    else:
        text = "# Benchmarks\n\n" + figures + "\n"
    path.write_text(text)


if __name__ == "__main__":
    main()

"""What a decoder process would leave on the proxy's loop (issue 19's last lever), for
`make bench` (or `python -m tests.bench.handoff_cost`).

The design measured: the proxy does not decode; per chunk it appends (flow, bytes) to a
list, and once per coalescing window writes the window's chunks, length-prefixed, to a
pipe in one `os.write`. A second process reads the pipe (here it only reads; decoding
there costs the proxy nothing). Measured: the proxy side's CPU per chunk, next to the
tap path's (tap_path.py: decoding, normalizing and publishing in the proxy).
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time

from tests.bench import tap_path

HEADER = struct.Struct("<IH")  # chunk length, flow number


def proxy_side(chunks: list[bytes], per_window: int) -> float:
    """µs of this process's CPU per chunk: the appends and one framed write per window."""
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, True)  # the reader keeps up; a real proxy would bound its backlog instead
    reader = subprocess.Popen([sys.executable, "-c", _DRAIN, str(read_fd)], pass_fds=(read_fd,))
    os.close(read_fd)
    pending: list[tuple[int, bytes]] = []
    pack = HEADER.pack
    start = time.process_time()
    for i, chunk in enumerate(chunks):
        pending.append((i % 30, chunk))
        if len(pending) >= per_window:
            os.write(write_fd, b"".join(pack(len(c), f) + c for f, c in pending))
            pending.clear()
    if pending:
        os.write(write_fd, b"".join(pack(len(c), f) + c for f, c in pending))
    took = time.process_time() - start
    os.close(write_fd)
    reader.wait(30)
    return took * 1e6 / len(chunks)


_DRAIN = "import os, sys\nfd = int(sys.argv[1])\nwhile os.read(fd, 1 << 20): pass\n"


def measure() -> list[str]:
    wire = tap_path.body()
    events = wire.split(b"\n\n")
    chunks = [e + b"\n\n" for e in events if e]  # one event a chunk: the worst case
    rows = []
    for per_window in (1, 5, 20):
        best = min(proxy_side(chunks, per_window) for _ in range(5))
        rows.append((per_window, best))
        print(f"handoff: {per_window:3} chunks a write: {best:.2f} µs per chunk", file=sys.stderr)
    seconds, count = tap_path.best_of(5, wire, "identity", 1024)
    tap = seconds * 1e6 / count
    lines = [
        "## A decoder process: what it would leave on the proxy",
        "",
        "tests/bench/handoff_cost.py: the tap path's stream, one event a chunk, handed to another",
        "process as a decoder process would take it: per chunk a list append, per window one",
        "length-prefixed `os.write` to a pipe. The proxy's CPU per chunk (best of 5), beside",
        "decoding it in the proxy (the tap path, identity, 1 KiB chunks).",
        "",
        "| chunks a write | proxy µs per chunk |",
        "|---|---|",
        *[f"| {n} | {us:.2f} |" for n, us in rows],
        f"| (decoding in the proxy) | {tap:.1f} per event |",
    ]
    return lines


if __name__ == "__main__":
    print("\n".join(measure()))

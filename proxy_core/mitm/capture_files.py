"""Captures: one JSONL file of events per stream in capture.dir, written by a thread of
its own so that the proxy never waits for a disk.

Files are `<UTC start>_<stream id>.jsonl` (a stream past `streamtap_capture_file_bytes`
continues in `..._2.jsonl` and on), created 0600 in a 0700 directory. Retention: files
older than `streamtap_capture_max_age` hours, and the oldest files beyond
`streamtap_capture_max_bytes` in all, are deleted. Events are already redacted.

Crash safety: lines are flushed to the OS once the queue is empty, and no later than
`streamtap_capture_flush_ms` after the first unflushed one (or the last flush's length,
if longer), so a killed process loses at most that window and what the thread had not
yet taken from its queue. A kill can tear a file's last line; serve_capture.read_capture
skips it. docs/config.md has the figures.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from mitmproxy import ctx, exceptions

from proxy_core.hub.envelope import Envelope
from proxy_core.hub.hub import Hub
from proxy_core.mitm.decoder_process import DecoderProcess, elsewhere

logger = logging.getLogger(__name__)

_STOP = object()
DEFAULT_FLUSH_MS = 100
_BUFFER_BYTES = 64 << 10  # per open file: no more of a stream waits unflushed, a full buffer writes itself out


@dataclass
class _OpenFile:
    path: Path
    handle: IO[bytes]
    part: int = 1
    size: int = 0


class CaptureWriter:
    """The writing thread; `put` is all the proxy's loop ever does (a queue append)."""

    def __init__(
        self, directory: Path, file_bytes: int, max_bytes: int, max_age: float,
        flush_interval: float = DEFAULT_FLUSH_MS / 1000,
    ) -> None:
        self.directory = directory
        self.file_bytes = file_bytes
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.flush_interval = flush_interval  # seconds; read by the thread, may be changed live
        self.queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self.files: dict[str, _OpenFile] = {}
        self._unflushed: dict[str, IO[bytes]] = {}  # by stream: flushing only these keeps a flush O(written)
        self.written = 0
        self._thread = threading.Thread(target=self._run, name="streamtap captures", daemon=True)

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._thread.start()

    def put(self, env: Envelope) -> None:
        self.queue.put(env)

    def stop(self) -> None:
        self.queue.put(_STOP)
        self._thread.join(10)

    def _run(self) -> None:
        last_sweep = 0.0
        flush_took = 0.0
        while True:
            item = self.queue.get()
            if item is _STOP:
                break
            try:
                self._write(item)  # type: ignore[arg-type]
                # Drain what piled up, then flush once; within flush_interval, as under a steady
                # flow the queue is never empty and what is unflushed a crash loses. Yet drain at
                # least as long as the last flush took: its writes each wait for the GIL (up to
                # 5 ms while the loop is busy), and a writer that mostly flushes falls behind.
                due = time.monotonic() + max(self.flush_interval, flush_took)
                while not self.queue.empty() and time.monotonic() < due:
                    nxt = self.queue.get_nowait()
                    if nxt is _STOP:
                        self._close_all()
                        return
                    self._write(nxt)  # type: ignore[arg-type]
                flush_started = time.monotonic()
                self._flush()
                flush_took = time.monotonic() - flush_started
                if time.monotonic() - last_sweep > 30:
                    last_sweep = time.monotonic()
                    self.sweep()
            except OSError as e:
                logger.warning(f"streamtap: capture write failed: {e}")
        self._close_all()

    def _write(self, env: Envelope) -> None:
        f = self.files.get(env.stream)
        if f is None:
            started = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(env.time))
            f = self.files[env.stream] = self._open(f"{started}_{env.stream}", 1)
        elif f.size >= self.file_bytes:
            self._forget(env.stream).close()
            base = f.path.name.rsplit(".", 1)[0].rsplit("_", 1)[0] if f.part > 1 else f.path.stem
            f = self.files[env.stream] = self._open(base, f.part + 1)
        line = env.json + b"\n"
        f.handle.write(line)
        f.size += len(line)
        self.written += 1
        self._unflushed[env.stream] = f.handle
        if env.terminal:
            self._forget(env.stream).close()

    def _forget(self, stream: str) -> IO[bytes]:
        """A stream's file, no longer tracked: should closing it fail, no closed file is left to write to."""
        self._unflushed.pop(stream, None)
        return self.files.pop(stream).handle

    def _flush(self) -> None:
        for handle in self._unflushed.values():
            handle.flush()
        self._unflushed.clear()

    def _open(self, base: str, part: int) -> _OpenFile:
        name = f"{base}.jsonl" if part == 1 else f"{base}_{part}.jsonl"
        path = self.directory / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        return _OpenFile(path, os.fdopen(fd, "ab", _BUFFER_BYTES), part)

    def sweep(self) -> None:
        """Delete captures past the age limit, then the oldest past the size limit."""
        now = time.time()
        open_paths = {f.path for f in self.files.values()}
        files = sorted((p.stat().st_mtime, p) for p in self.directory.glob("*.jsonl") if p not in open_paths)
        total = sum(p.stat().st_size for _, p in files) + sum(f.size for f in self.files.values())
        for mtime, path in files:
            if now - mtime > self.max_age or total > self.max_bytes:
                total -= path.stat().st_size
                path.unlink(missing_ok=True)

    def _close_all(self) -> None:
        for f in self.files.values():
            f.handle.close()
        self.files.clear()
        self._unflushed.clear()


class Captures:
    def __init__(self, hub: Hub, decoder: DecoderProcess | None = None) -> None:
        self.hub = hub
        self.decoder = decoder  # when it runs, the files are written there instead
        self.writer: CaptureWriter | None = None

    def load(self, loader) -> None:
        loader.add_option("streamtap_capture_dir", str, "", "Write one JSONL file of events per stream here.")
        loader.add_option("streamtap_capture_file_bytes", int, 64 << 20, "Start a new part file past this size.")
        loader.add_option("streamtap_capture_max_bytes", int, 1 << 30, "Delete the oldest captures past this total.")
        loader.add_option("streamtap_capture_max_age", int, 24 * 7, "Delete captures older than this many hours.")
        loader.add_option(
            "streamtap_capture_flush_ms",
            int,
            DEFAULT_FLUSH_MS,
            "Longest a captured event waits in the writer's buffer before it reaches the OS, in milliseconds "
            "(0: flush every event). A crash loses at most this window.",
        )

    def configure(self, updated: set[str]) -> None:
        for name in ("streamtap_capture_file_bytes", "streamtap_capture_max_bytes", "streamtap_capture_max_age"):
            if name in updated and getattr(ctx.options, name) < 1:
                raise exceptions.OptionsError(f"{name}: must be at least 1")
        if "streamtap_capture_flush_ms" in updated:
            if ctx.options.streamtap_capture_flush_ms < 0:
                raise exceptions.OptionsError("streamtap_capture_flush_ms: must be 0 or more")
            if self.writer is not None:
                self.writer.flush_interval = ctx.options.streamtap_capture_flush_ms / 1000
        if "streamtap_capture_dir" in updated and self.writer is not None:
            self._stop()
            self._start()

    def running(self) -> None:
        self._start()

    def done(self) -> None:
        self._stop()

    def _start(self) -> None:
        if not ctx.options.streamtap_capture_dir or elsewhere(self.decoder):
            return
        self.writer = CaptureWriter(
            Path(ctx.options.streamtap_capture_dir),
            ctx.options.streamtap_capture_file_bytes,
            ctx.options.streamtap_capture_max_bytes,
            ctx.options.streamtap_capture_max_age * 3600.0,
            ctx.options.streamtap_capture_flush_ms / 1000,
        )
        self.writer.start()
        self.hub.sinks.append(self.writer.put)
        logger.info(f"streamtap: capturing streams to {ctx.options.streamtap_capture_dir}")

    def _stop(self) -> None:
        if self.writer is not None:
            self.hub.sinks.remove(self.writer.put)
            self.writer.stop()
            self.writer = None

"""DecoderProcess: decode in a second process, so the proxy's loop only forwards.

With `streamtap_decoder_process` on (or on `auto` with enough cores), the proxy decodes
nothing. Per chunk, the tap appends it to a batch and returns it; once per coalescing
window, the batch goes to the decoder process (mitm/decoder_host.py) in one write on a
socket pair. That process holds the hub, the API, the sinks and the capture files, and
runs the same taps the proxy would. The proxy never waits for it: the socket's
transport buffers, and past MAX_BACKLOG bytes a stream's chunks are not sent but
counted, and its events say so with a decode.error (the client's bytes are never
touched). Frames go in the order the hooks ran, so every ordering guarantee holds.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mitmproxy import ctx, exceptions
from mitmproxy.utils import asyncio_utils

import proxy_core
from proxy_core.config import checks, defaults
from proxy_core.mitm.readiness import proxy_checks
from proxy_core.pipeline.channel import (
    CONTROL,
    ChannelError,
    ChannelReader,
    chunk_header,
    control,
    decode_control,
    ws_header,
)

logger = logging.getLogger(__name__)

MAX_BACKLOG = 64 << 20  # bytes queued for the decoder process before chunks are skipped
RESUME_BACKLOG = 16 << 20
NOT_FORWARDED = {"streamtap_decoder_process", "streamtap_config"}  # the proxy's own business
READY_TIMEOUT = 30.0
EXIT_TIMEOUT = 10.0


def usable_cpus(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """The CPUs this process may use: its affinity, and a container's CPU quota (cgroup
    v2 `cpu.max`, "QUOTA PERIOD"), which the affinity does not show."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    try:
        quota, period = cpu_max.read_text().split()
        if quota != "max":
            cpus = min(cpus, max(1, int(quota) // int(period)))
    except (OSError, ValueError):
        pass  # no cgroup v2 here, or no limit
    return cpus


def wanted(mode: str) -> bool:
    return mode == "on" or (mode == "auto" and usable_cpus() >= defaults.DECODER_PROCESS_MIN_CPUS)


def elsewhere(decoder: DecoderProcess | None) -> bool:
    """Whether the decoder process, not this one, holds the hub."""
    return decoder is not None and decoder.active


def forwarded_options() -> dict[str, Any]:
    """What the decoder process's addons read: streamtap's options and where the proxy listens."""
    options = ctx.options
    names = [n for n in options.keys() if n.startswith("streamtap_") and n not in NOT_FORWARDED]
    return {name: getattr(options, name) for name in [*names, "listen_host", "listen_port"]}


class DecoderProcess:
    def __init__(self) -> None:
        self.mode = defaults.DECODER_PROCESS
        self.active = wanted(self.mode)  # this proxy's flows are decoded there; the option may say otherwise
        self.window = defaults.DECODE_WINDOW
        self.http = RemoteHttpTaps(self)
        self.websockets = RemoteWebSocketTaps(self)
        self.process: subprocess.Popen[bytes] | None = None
        self.failed: str | None = None  # why the decoder process could not serve; the proxy then stops
        self.overloaded = False  # the backlog passed MAX_BACKLOG: chunks are counted, not sent
        self._transport: asyncio.Transport | None = None
        self._parts: list[bytes] = []
        self._last_flush = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._ready: asyncio.Future[None] | None = None
        self._stopping = False

    def load(self, loader) -> None:
        loader.add_option(
            "streamtap_decoder_process", str, defaults.DECODER_PROCESS,
            "Decode in a second process, so the proxy's loop only forwards bytes: on, off, or auto "
            f"(on with {defaults.DECODER_PROCESS_MIN_CPUS} or more CPUs).",
            choices=defaults.DECODER_PROCESS_MODES,
        )

    def configure(self, updated: set[str]) -> None:
        if "streamtap_decoder_process" in updated:
            if self.process is not None and wanted(ctx.options.streamtap_decoder_process) != self.active:
                raise exceptions.OptionsError("streamtap_decoder_process: cannot change while the proxy runs")
            self.mode = ctx.options.streamtap_decoder_process
            self.active = wanted(self.mode)
        if "streamtap_decode_window" in updated:  # checked by StreamCapture
            self.window = checks.decode_window("streamtap_decode_window", ctx.options.streamtap_decode_window)
        if self._transport is not None:
            changed = {name: value for name, value in forwarded_options().items() if name in updated}
            if changed:
                self.send(control("options", changed))
            if updated & {"listen_host", "listen_port"}:
                self._send_status()

    async def running(self) -> None:
        if not self.active:
            return
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        loop_name = "uvloop" if any(c.__module__.startswith("uvloop") for c in type(loop).__mro__) else "asyncio"
        # The same proxy_core as this process's, installed or not (mitmdump -s from a checkout).
        root = str(Path(proxy_core.__file__).resolve().parent.parent)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "proxy_core.mitm.decoder_host", str(theirs.fileno()), loop_name],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, env=env,
                start_new_session=True,  # a Ctrl-C reaches the proxy, which stops it in order
            )
        except OSError as e:
            self._fail(f"cannot start the decoder process: {e}")
            return
        finally:
            theirs.close()
        self._ready = loop.create_future()
        transport, _ = await loop.create_unix_connection(lambda: _ChannelProtocol(self), sock=ours)
        transport.set_write_buffer_limits(high=MAX_BACKLOG, low=RESUME_BACKLOG)
        self._transport = transport
        # First how to run, then whatever flows came while the servers were up and this
        # not yet (mitmproxy starts them before the running hooks).
        early, self._parts = self._parts, [control("options", forwarded_options())]
        self._send_status()
        self._parts += early
        self.flush()
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), READY_TIMEOUT)
        except TimeoutError:
            self._fail(f"the decoder process did not start within {READY_TIMEOUT:.0f} s")
        except ChildFailed:
            pass  # _fail has said why
        else:
            logger.info(f"streamtap: decoding in process {self.process.pid}")

    async def done(self) -> None:
        self._stopping = True
        process = self.process
        if process is None:
            return
        if self._transport is not None and not self._transport.is_closing():
            self.send(control("shutdown"))
            self.flush()
        try:  # it aborts what is in flight, drains its readers and flushes its sinks first
            await asyncio.to_thread(process.wait, EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            logger.warning(f"streamtap: the decoder process did not stop within {EXIT_TIMEOUT:.0f} s; killed")
            process.kill()
            await asyncio.to_thread(process.wait)
        if self._transport is not None:
            self._transport.close()

    # The channel --------------------------------------------------------------------

    def send(self, *parts: bytes) -> None:
        """Queue frames for the next write; never blocks, never raises."""
        self._parts.extend(parts)
        # As the Coalescer does: past the window, the next frame writes everything, even
        # when the timer is still due (a busy loop runs its timers late).
        wait = self.window - (time.perf_counter() - self._last_flush)
        if wait <= 0:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(wait, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._last_flush = time.perf_counter()
        transport = self._transport
        if transport is None or not self._parts:
            return  # not started yet: the frames go first when it is
        parts, self._parts = self._parts, []
        if not transport.is_closing():  # else it stopped: lost() has said so, and the proxy stops
            transport.write(b"".join(parts))

    def received(self, message: list[Any]) -> None:
        op = message[0]
        if op == "log":
            _, level, name, text = message
            logging.getLogger(name).log(level, text)
        elif op == "ready":
            if self._ready is not None and not self._ready.done():
                self._ready.set_result(None)
        elif op == "failed":  # it has logged why
            self._fail(message[1], logged=True)

    def lost(self, why: str | None) -> None:
        if not self._stopping:
            asyncio_utils.create_task(self._report_lost(why), name="streamtap decoder process lost", keep_ref=True)

    async def _report_lost(self, why: str | None) -> None:
        process = self.process
        code = None
        if process is not None:  # the socket closes a moment before the exit is known
            try:
                code = await asyncio.to_thread(process.wait, 2)
            except subprocess.TimeoutExpired:
                pass
        detail = "" if code is None else f" (killed by signal {-code})" if code < 0 else f" (exit code {code})"
        self._fail(why or f"the decoder process stopped{detail}")

    def _fail(self, why: str, logged: bool = False) -> None:
        if self.failed is None:
            self.failed = why
            if not logged:
                logger.error(f"streamtap: {why}; stopping")
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(ChildFailed(why))
            self._ready.exception()  # retrieved: running() may be gone already
        ctx.master.shutdown()

    def _send_status(self) -> None:
        self.send(control("status", proxy_checks()))


class ChildFailed(Exception):
    pass


class _ChannelProtocol(asyncio.Protocol):
    """The proxy's end of the socket pair: writes the frames, reads the child's replies."""

    def __init__(self, owner: DecoderProcess) -> None:
        self.owner = owner
        self.reader = ChannelReader()

    def data_received(self, data: bytes) -> None:
        try:
            for kind, _, body in self.reader.feed(data):
                if kind == CONTROL:
                    self.owner.received(decode_control(body))
        except ChannelError as e:
            self.owner.lost(f"the decoder process sent what is not a frame: {e}")

    def pause_writing(self) -> None:
        self.owner.overloaded = True
        logger.warning(f"streamtap: the decoder process is {MAX_BACKLOG >> 20} MiB behind; "
                       "chunks are not decoded until it catches up (their streams get a decode.error)")

    def resume_writing(self) -> None:
        self.owner.overloaded = False

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner.lost(None)


class ChunkForwarder:
    """The callable mitmproxy streams a response body through, when the decoder process
    decodes it: the chunk is queued for it and returned, unchanged, at once."""

    __slots__ = ("owner", "key", "flow_id", "stream_id", "skipped", "ended")

    def __init__(self, owner: DecoderProcess, key: int, flow_id: str, stream_id: str) -> None:
        self.owner = owner
        self.key = key
        self.flow_id = flow_id
        self.stream_id = stream_id
        self.skipped = 0  # bytes not sent while the decoder process was behind
        self.ended = False

    def __call__(self, chunk: bytes) -> bytes:
        owner = self.owner
        if not chunk:
            self.end()
        elif self.ended:
            pass
        elif owner.overloaded:
            self.skipped += len(chunk)
        else:
            if self.skipped:
                self._send_skipped()
            owner.send(chunk_header(self.key, len(chunk)), chunk)
        return chunk

    def end(self) -> None:
        self._last("end")

    def abort(self, by: str, message: str) -> None:
        self._last("abort", by, message)

    def _last(self, op: str, *args: str) -> None:
        """The flow's last frame: what was skipped is said first."""
        if not self.ended:
            self.ended = True
            self._send_skipped()
            self.owner.send(control(op, self.key, *args))

    def _send_skipped(self) -> None:
        if self.skipped:
            self.owner.send(control("skip", self.key, self.skipped))
            self.skipped = 0


class RemoteHttpTaps:
    """HttpTaps' interface (hub/taps.py), with the taps in the decoder process."""

    def __init__(self, owner: DecoderProcess) -> None:
        self.owner = owner
        self.taps: dict[str, ChunkForwarder] = {}
        self._last = 0  # the number of the newest flow

    def open(self, key: str, request: dict[str, Any], response: dict[str, Any], provider: str,
             max_event_bytes: int) -> ChunkForwarder:
        self._last = number = (self._last + 1) & 0xFFFFFFFF
        stream_id = secrets.token_hex(6)
        self.owner.send(control("open", number, stream_id, request, response, provider, max_event_bytes))
        forwarder = self.taps[key] = ChunkForwarder(self.owner, number, key, stream_id)
        return forwarder

    def forget(self, key: str) -> None:
        self.taps.pop(key, None)

    def end(self, key: str) -> None:
        if (forwarder := self.taps.pop(key, None)) is not None:
            forwarder.end()

    def abort(self, key: str, by: str, message: str) -> bool:
        forwarder = self.taps.pop(key, None)
        if forwarder is None:
            return False
        forwarder.abort(by, message)
        return True

    def no_answer(self, request: dict[str, Any], message: str) -> str:
        stream_id = secrets.token_hex(6)
        self.owner.send(control("no_answer", stream_id, request, message))
        return stream_id


class RemoteWebSocketTaps:
    """WebSocketTaps' interface (hub/taps.py), with the taps in the decoder process."""

    def __init__(self, owner: DecoderProcess) -> None:
        self.owner = owner
        self._keys: dict[str, int] = {}  # flow id -> its number on the channel
        self._skipped: dict[int, list[int]] = {}  # number -> [messages, bytes] not sent while behind
        self._last = 0

    def __contains__(self, key: str) -> bool:
        return key in self._keys

    def start(self, key: str, provider: str, request: dict[str, Any], response: dict[str, Any],
              model: str | None, max_event_bytes: int, connection: str) -> None:
        self._last = number = (self._last + 1) & 0xFFFFFFFF
        self._keys[key] = number
        self.owner.send(control("ws_start", number, provider, request, response, model, max_event_bytes,
                                connection))

    def message(self, key: str, from_client: bool, content: bytes, is_text: bool) -> None:
        number = self._keys[key]
        if self.owner.overloaded:
            skipped = self._skipped.setdefault(number, [0, 0])
            skipped[0] += 1
            skipped[1] += len(content)
            return
        if self._skipped:
            self._send_skipped(number)
        self.owner.send(ws_header(number, len(content), from_client, is_text), content)

    def end(self, key: str, closed_by_client: bool | None, code: int | None, reason: str | None) -> None:
        if (number := self._keys.pop(key, None)) is not None:
            self._send_skipped(number)
            self.owner.send(control("ws_end", number, closed_by_client, code, reason))

    def _send_skipped(self, number: int) -> None:
        if (skipped := self._skipped.pop(number, None)) is not None:
            self.owner.send(control("ws_skip", number, *skipped))

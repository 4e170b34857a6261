"""Two instances on one machine: the second is refused in one line and never takes the
first one's API down."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.proc import STREAMTAP, StreamtapProcess

from ..support.api_http import get_json

pytestmark = pytest.mark.e2e

MITMDUMP = str(Path(sys.executable).with_name("mitmdump"))
ADDON = str(Path(__file__).resolve().parents[2] / "addons" / "stream_capture.py")


def second(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("how", ["streamtap run", "mitmdump -s"])
def test_a_second_instance_on_the_same_socket_is_refused_and_leaves_the_first_alone(tmp_path, how):
    sock = tmp_path / "run" / "streamtap.sock"
    first = StreamtapProcess(["--certs", str(tmp_path / "certs"), "--api-socket", str(sock)], cwd=tmp_path)
    try:
        if how == "streamtap run":
            cmd = [STREAMTAP, "run", "--listen", "127.0.0.1:0", "--certs", str(tmp_path / "certs"),
                   "--api-socket", str(sock)]
        else:
            cmd = [MITMDUMP, "-q", "-s", ADDON, "--listen-host", "127.0.0.1", "--listen-port", "0",
                   "--set", f"confdir={tmp_path / 'certs'}", "--set", f"streamtap_api_socket={sock}"]
        result = second(cmd, tmp_path)
        output = result.stdout + result.stderr
        assert "Traceback" not in output, output
        assert f"another process is serving on {sock}" in output, output
        assert sum("another process" in line for line in output.splitlines()) == 1, output
        if how == "streamtap run":
            assert result.returncode == 1
        assert sock.exists(), "the second instance removed the first one's socket"
        assert get_json(str(sock), "/healthz")["status"] == "ok"
    finally:
        assert first.stop() == 0
    assert not sock.exists()  # the first removes its own socket on the way out


def test_a_busy_api_port_is_one_line(tmp_path, busy_port):
    port = busy_port
    result = second([STREAMTAP, "run", "--listen", "127.0.0.1:0", "--certs", str(tmp_path / "certs"),
                     "--api-socket", str(tmp_path / "api.sock"), "--api-listen", f"127.0.0.1:{port}"], tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "Traceback" not in output, output
    assert f"cannot serve the API: --api-listen 127.0.0.1:{port}: Address already in use" in output, output
    assert not (tmp_path / "api.sock").exists()  # what it had bound before the failure is gone

"""The certs directory and the proxy port, when they are not as expected: one line each,
never a traceback; and a read-only CA (a secret volume) works as it is.

Read-only directories are real read-only bind mounts, made in a mount namespace of the
test's own (`unshare -m`), so nothing outside the test sees them."""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..support.api_http import get_json

pytestmark = pytest.mark.e2e

STREAMTAP = str(Path(sys.executable).with_name("streamtap"))


def read_only(source: Path, target: Path, command: list[str]) -> list[str]:
    """`command` run where `target` is `source` mounted read-only."""
    target.mkdir(exist_ok=True)
    script = (f"mount --bind {shlex.quote(str(source))} {shlex.quote(str(target))} && "
              f"mount -o remount,bind,ro {shlex.quote(str(target))} && exec {shlex.join(command)}")
    return ["unshare", "-m", "sh", "-c", script]


def streamtap_run(certs: Path, tmp_path: Path, *extra: str) -> list[str]:
    return [STREAMTAP, "run", "--listen", "127.0.0.1:0", "--certs", str(certs),
            "--api-socket", str(tmp_path / "api.sock"), *extra]


def test_a_read_only_ca_directory_works_as_it_is(tmp_path):
    src = tmp_path / "made"
    # A first run writes every file the directory needs; then it is mounted read-only.
    proc = subprocess.Popen(streamtap_run(src, tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_healthy(proc, tmp_path / "api.sock")
    proc.terminate()
    proc.wait(30)
    modes = {p.name: p.stat().st_mode & 0o777 for p in src.iterdir()}
    ro = tmp_path / "ro"
    proc = subprocess.Popen(read_only(src, ro, streamtap_run(ro, tmp_path)), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        _wait_healthy(proc, tmp_path / "api.sock")
    finally:
        proc.terminate()
        output = proc.communicate(timeout=30)[0]
    assert "Traceback" not in output, output
    assert {p.name: p.stat().st_mode & 0o777 for p in src.iterdir()} == modes  # nothing was touched


def test_an_unwritable_certs_directory_is_one_line(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    ro = tmp_path / "ro"
    result = subprocess.run(read_only(empty, ro, streamtap_run(ro / "certs", tmp_path)), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip() == f"streamtap: cannot create the CA in {ro / 'certs'}: Read-only file system"


def test_a_read_only_ca_without_mitmproxys_dhparam_file_says_what_to_do(tmp_path):
    src = tmp_path / "made"
    from proxy_core.pki.ca import DHPARAM_FILE, ensure_ca

    ensure_ca(src)  # the CA files alone, as someone might put them in a secret
    assert not (src / DHPARAM_FILE).exists()
    ro = tmp_path / "ro"
    result = subprocess.run(read_only(src, ro, streamtap_run(ro, tmp_path)), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert f"{ro} is read-only and lacks {DHPARAM_FILE}" in result.stderr


def test_a_busy_proxy_port_is_one_line_naming_listen(tmp_path, busy_port):
    port = busy_port
    result = subprocess.run([STREAMTAP, "run", "--listen", f"127.0.0.1:{port}", "--certs", str(tmp_path / "c"),
                             "--api-socket", str(tmp_path / "api.sock")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr + result.stdout
    assert f"proxy.listen 127.0.0.1:{port}: Address already in use" in result.stderr
    assert "--listen HOST:PORT" in result.stderr and "--mode" not in result.stderr + result.stdout


def _wait_healthy(proc: subprocess.Popen, sock: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[0]
        if sock.exists():
            try:
                if get_json(str(sock), "/healthz", timeout=2)["status"] == "ok":
                    return
            except (OSError, ValueError):
                pass
        time.sleep(0.05)
    raise AssertionError("streamtap never became healthy")


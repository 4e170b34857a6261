"""Are the dependencies setup.cfg declares enough to run streamtap? (`make check-deps`)

In a new virtual environment, with the interpreter that runs this script:
1. `pip install .` from setup.cfg alone: no extras, no lock, no pip cache, and none of
   this machine's pip configuration or wheel mirrors, so the resolver picks what a new
   user's would today;
2. import every module of proxy_core and every addon script, from the installed copy
   (the checkout is not on the path);
3. start `streamtap run` and wait for GET /healthz to answer {"status": "ok"}, then stop it.

Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEALTH_TIMEOUT = 60.0

# Runs inside the new venv: imports every module and says how many.
IMPORT_ALL = """
import importlib, importlib.util, pkgutil, sys
from pathlib import Path
import proxy_core
assert not Path(proxy_core.__file__).is_relative_to(Path(sys.argv[1])), proxy_core.__file__
names = ["proxy_core"] + [m.name for m in pkgutil.walk_packages(proxy_core.__path__, "proxy_core.")]
for name in names:
    importlib.import_module(name)
addons = sorted(Path(sys.argv[1], "addons").glob("*.py"))
for path in addons:
    spec = importlib.util.spec_from_file_location("addon_" + path.stem, path)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
print(f"imported {len(names)} modules of proxy_core and {len(addons)} addon scripts")
"""


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=5)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(self._path)


def clean_pip_env(work: Path) -> dict[str, str]:
    """The environment minus this machine's pip settings (mirrors, constraints, caches)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_CACHE_DIR="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    env["HOME"] = str(work / "home")  # no user configuration or cache either
    if "PIP_CERT" in os.environ:  # how this machine reaches PyPI, not a package source
        env["PIP_CERT"] = os.environ["PIP_CERT"]
    return env


def run(what: str, cmd: list, **kwargs) -> None:
    if subprocess.run(cmd, **kwargs).returncode != 0:
        raise SystemExit(f"check-deps: FAILED: {what} (its output is above)")


def step(title: str, start: float) -> None:
    print(f"check-deps: {title} ({time.monotonic() - start:.1f} s)", flush=True)


def healthz(sock_path: Path) -> dict | None:
    conn = UnixHTTPConnection(str(sock_path))
    try:
        conn.request("GET", "/healthz")
        resp = conn.getresponse()
        return json.loads(resp.read()) if resp.status == 200 else None
    except OSError:
        return None
    finally:
        conn.close()


def wait_healthy(proc: subprocess.Popen, sock_path: Path) -> dict:
    deadline = time.monotonic() + HEALTH_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"check-deps: streamtap run exited with {proc.returncode} before it was healthy")
        if sock_path.exists() and (health := healthz(sock_path)) and health.get("status") == "ok":
            return health
        time.sleep(0.1)
    raise SystemExit(f"check-deps: no healthy /healthz within {HEALTH_TIMEOUT:.0f} s")


def main() -> int:
    start = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="streamtap-deps-"))
    try:
        env = clean_pip_env(work)
        print(f"check-deps: Python {sys.version.split()[0]} ({sys.executable}), in {work}", flush=True)
        venv.create(work / "venv", with_pip=True)
        bin_dir = work / "venv" / "bin"
        # Built from a copy, so no build artefact lands in the checkout.
        src = work / "src"
        shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv*", "run", "build", "*.egg-info",
                                                                 "__pycache__", ".hypothesis", "certs"))
        run("pip install . (setup.cfg alone)", [bin_dir / "python", "-m", "pip", "install", "--quiet", str(src)],
            env=env)
        step("installed from setup.cfg alone", start)
        run("pip check", [bin_dir / "python", "-m", "pip", "check"], env=env, cwd=work)
        run("import every module", [bin_dir / "python", "-c", IMPORT_ALL, str(src)], env=env, cwd=work)
        step("every module imports", start)

        sock_path = work / "run" / "streamtap.sock"
        proc = subprocess.Popen(
            [bin_dir / "streamtap", "run", "--listen", "127.0.0.1:0", "--certs", str(work / "certs"),
             "--api-socket", str(sock_path)],
            cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        try:
            health = wait_healthy(proc, sock_path)
        except SystemExit:
            proc.kill()
            print(proc.communicate()[0], file=sys.stderr)
            raise
        proc.send_signal(signal.SIGINT)
        output = proc.communicate(timeout=30)[0]
        if proc.returncode != 0:
            print(output, file=sys.stderr)
            raise SystemExit(f"check-deps: streamtap run exited with {proc.returncode} on SIGINT")
        step(f"streamtap run was healthy ({', '.join(sorted(health.get('checks', {})))}) and stopped cleanly",
             start)
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

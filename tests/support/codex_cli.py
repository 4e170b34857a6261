"""Running the real Codex CLI (tests.support.agents.codex) through a `streamtap run`, and
waiting for the streams its answers became: shared by the Codex end-to-end tests (an API
key, tests/e2e/test_codex.py; a ChatGPT login, tests/e2e/test_codex_chatgpt_login.py)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.subscriber import TERMINAL, EventLog


def codex_env(home: Path, proxy_url: str, ca: Path, **extra: str) -> dict[str, str]:
    """A clean environment: its own HOME and CODEX_HOME (home/.codex, created), every
    request through the proxy (NO_PROXY empty), `ca` trusted by Codex and its TLS stack.
    Nothing else of the caller's, so no real credentials reach Codex."""
    (home / ".codex").mkdir(parents=True, exist_ok=True)
    return {"PATH": os.environ["PATH"], "HOME": str(home), "CODEX_HOME": str(home / ".codex"),
            "HTTPS_PROXY": proxy_url, "https_proxy": proxy_url, "NO_PROXY": "", "no_proxy": "",
            "CODEX_CA_CERTIFICATE": str(ca), "SSL_CERT_FILE": str(ca), **extra}


def codex_exec(binary: Path, env: dict[str, str], workdir: Path, *config: str, model: str | None = None,
               prompt: str = "say hello", timeout: float = 120) -> subprocess.CompletedProcess:
    """`codex exec` with `-c` overrides, in a fresh workdir. Without the CA Codex would
    reconnect for ever: the time limit ends any such run."""
    workdir.mkdir(parents=True)
    return subprocess.run([str(binary), "exec", "--skip-git-repo-check", *(["-m", model] if model else []),
                           *[a for c in config for a in ("-c", c)], prompt],
                          env=env, cwd=workdir, capture_output=True, text=True, timeout=timeout)


def finished_streams(log: EventLog, match: Callable[[dict[str, Any]], bool], count: int,
                     timeout: float = 20) -> list[list[dict[str, Any]]]:
    """The events of every stream whose stream.start matches, once at least `count` of
    them exist and all have ended."""
    deadline = time.monotonic() + timeout
    while True:
        events = list(log.events)
        starts = [e for e in events if e["type"] == "stream.start" and match(e)]
        out = [[e for e in events if e["stream"] == s["stream"]] for s in starts]
        if len(out) >= count and all(o[-1]["type"] in TERMINAL for o in out):
            return out
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(out)} matching streams: {[o[-1]['type'] for o in out]}")
        time.sleep(0.05)

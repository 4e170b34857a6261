"""Coding agents the end-to-end tests drive for real, installed once into a cache
(build/agents/, or $STREAMTAP_AGENTS_DIR) by their ordinary package manager."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CODEX_VERSION = os.environ.get("STREAMTAP_CODEX_VERSION", "0.171.0")


def agents_dir() -> Path:
    return Path(os.environ.get("STREAMTAP_AGENTS_DIR", ROOT / "build" / "agents"))


def codex() -> Path:
    """The `codex` command of npm @openai/codex at CODEX_VERSION, installed on first use
    (one installer at a time across pytest-xdist workers)."""
    prefix = agents_dir() / f"codex-{CODEX_VERSION}"
    binary = prefix / "node_modules" / ".bin" / "codex"
    prefix.mkdir(parents=True, exist_ok=True)
    with open(prefix / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not binary.exists():
            npm = shutil.which("npm")
            if npm is None:
                raise RuntimeError("npm is needed to install @openai/codex for the Codex end-to-end tests")
            subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(prefix),
                            f"@openai/codex@{CODEX_VERSION}"], check=True, timeout=600,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return binary


CLAUDE_CODE_VERSION = os.environ.get("STREAMTAP_CLAUDE_CODE_VERSION", "2.1.332")
GEMINI_CLI_VERSION = os.environ.get("STREAMTAP_GEMINI_CLI_VERSION", "0.61.0")


def npm_agent(package: str, version: str, command: str) -> Path:
    """The `command` of npm `package`@`version`, installed on first use into the cache
    (one installer at a time across pytest-xdist workers)."""
    prefix = agents_dir() / f"{package.rsplit('/', 1)[-1]}-{version}"
    binary = prefix / "node_modules" / ".bin" / command
    prefix.mkdir(parents=True, exist_ok=True)
    with open(prefix / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not binary.exists():
            npm = shutil.which("npm")
            if npm is None:
                raise RuntimeError(f"npm is needed to install {package} for the end-to-end tests")
            subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(prefix),
                            f"{package}@{version}"], check=True, timeout=600,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return binary


def claude_code() -> Path:
    return npm_agent("@anthropic-ai/claude-code", CLAUDE_CODE_VERSION, "claude")


def gemini_cli() -> Path:
    return npm_agent("@google/gemini-cli", GEMINI_CLI_VERSION, "gemini")

"""The API token that a TCP listener requires by default, kept 0600 beside the socket.

The token outlives restarts (a bookmarked page keeps working) and never appears in a log:
streamtap says where the file is, and programs read it from there.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from proxy_core.config import defaults

TOKEN_FILE = "api-token"
OFF = "off"  # streamtap_api_token=off: a TCP listener without a token (a trusted machine only)


class TokenError(ValueError):
    pass


def token_path(api_socket: str | None = defaults.API_SOCKET) -> Path:
    """Where the generated token lives: beside the API socket (run/api-token by default)."""
    return Path(api_socket or defaults.API_SOCKET).parent / TOKEN_FILE


def read_token(path: Path) -> str | None:
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise TokenError(f"{path}: cannot read the API token ({e.strerror})") from None
    return token or None


def ensure_token(path: Path) -> str:
    """The token in `path`, made (0600) on first use; a file others can read is tightened."""
    if (token := read_token(path)) is not None:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            try:
                path.chmod(mode & 0o700)
            except OSError as e:
                raise TokenError(f"{path}: readable by others and cannot be made private ({e.strerror})") from None
        return token
    token = secrets.token_urlsafe(32)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return ensure_token(path)
    except OSError as e:
        raise TokenError(f"{path}: cannot write the API token ({e.strerror})") from None
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token

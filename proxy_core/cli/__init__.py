"""The `streamtap` command. `tail`, `ca`, `env` and `pac` never import mitmproxy."""

from proxy_core.cli.main import main

__all__ = ["main"]

"""The mitmproxy addons of streamtap. `streamtap run` and `mitmdump -s addons/stream_capture.py`
load the same list."""

from __future__ import annotations

from ..hub import Hub
from .api_server import ApiServer
from .capture import StreamCapture
from .config_file import ConfigFile
from .routing import Routing

__all__ = ["ApiServer", "ConfigFile", "Routing", "StreamCapture", "default_addons"]


def default_addons(hub: Hub | None = None) -> list[object]:
    hub = hub or Hub()
    return [ConfigFile(), Routing(), StreamCapture(hub), ApiServer(hub)]

"""The mitmproxy addons of streamtap. `streamtap run` and `mitmdump -s addons/stream_capture.py`
load the same list."""

from __future__ import annotations

from proxy_core.hub.hub import Hub
from proxy_core.mitm.api_server import ApiServer
from proxy_core.mitm.capture_files import Captures
from proxy_core.mitm.config_file import ConfigFile
from proxy_core.mitm.decoder_process import DecoderProcess
from proxy_core.mitm.routing import Routing
from proxy_core.mitm.sinks import Sinks
from proxy_core.mitm.stream_capture import StreamCapture
from proxy_core.mitm.upstream import UpstreamProxies
from proxy_core.mitm.websocket_capture import WebSocketCapture

__all__ = ["ApiServer", "Captures", "ConfigFile", "DecoderProcess", "Routing", "Sinks", "StreamCapture",
           "UpstreamProxies", "WebSocketCapture", "default_addons"]


def default_addons(hub: Hub | None = None, standalone: bool = False) -> list[object]:
    """`standalone`: for the addon script, which gives mitmproxy streamtap run's defaults."""
    hub = hub or Hub()
    decoder = DecoderProcess()  # when it runs, the addons from StreamCapture on hand their work to it
    # Order matters at shutdown: streams are aborted, then written, then readers flushed;
    # the decoder process (last) does the same in its own process (decoder_host.py).
    return [ConfigFile(standalone), Routing(), UpstreamProxies(), StreamCapture(hub, decoder),
            WebSocketCapture(hub, decoder), Captures(hub, decoder), Sinks(hub, decoder), ApiServer(hub, decoder),
            decoder]

"""StreamCapture: tap every routed response and publish its events to the hub."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from mitmproxy import ctx, exceptions, http
from mitmproxy.utils import asyncio_utils

from proxy_core.config import checks, defaults
from proxy_core.config.checks import ConfigError
from proxy_core.hub.hub import Hub
from proxy_core.hub.taps import FlowTap, HttpTaps
from proxy_core.mitm.flowinfo import aborted_by, request_info, response_info
from proxy_core.mitm.routing import PROVIDER
from proxy_core.pipeline.coalesce import Coalescer
from proxy_core.pipeline.websocket import WEBSOCKET_ONLY

if TYPE_CHECKING:
    from proxy_core.mitm.decoder_process import DecoderProcess, RemoteHttpTaps

logger = logging.getLogger(__name__)

# flow.metadata is saved, copied and pickled with the flow: only plain data goes there.
# The live tap stays in StreamCapture's HttpTaps, keyed by flow.id, until the flow ends.
STREAM_ID = "streamtap.stream"

__all__ = ["STREAM_ID", "FlowTap", "StreamCapture"]


class StreamCapture:
    """Taps every routed response: here, or in the decoder process when it runs."""

    def __init__(self, hub: Hub, decoder: DecoderProcess | None = None) -> None:
        self.hub = hub
        self.taps = HttpTaps(hub, Coalescer(hub.deliver))
        self.decoder = decoder
        self._stall_watch: asyncio.Task | None = None
        self.idle_timeout = defaults.IDLE_TIMEOUT

    @property
    def coalescer(self) -> Coalescer:
        assert self.taps.coalescer is not None
        return self.taps.coalescer

    @property
    def _taps(self) -> HttpTaps | RemoteHttpTaps:
        """Where this process's flows are decoded."""
        if self.decoder is not None and self.decoder.active:
            return self.decoder.http
        return self.taps

    def load(self, loader) -> None:
        loader.add_option(
            "streamtap_max_event_bytes",
            int,
            defaults.MAX_EVENT_BYTES,
            "Largest single decoded event; a larger one becomes a decode.error and is skipped.",
        )
        loader.add_option(
            "streamtap_decode_window",
            str,  # mitmproxy options have no float type
            str(defaults.DECODE_WINDOW),
            "Seconds a chunk may wait to be decoded with the chunks after it (0: decode every chunk at once). "
            "Larger saves CPU under load; readers lag by up to this much.",
        )
        loader.add_option(
            "streamtap_idle_timeout",
            str,  # mitmproxy options have no float type
            str(defaults.IDLE_TIMEOUT),
            "Seconds without bytes after which an active stream gets a stream.stall event.",
        )

    def configure(self, updated: set[str]) -> None:
        try:
            if "streamtap_max_event_bytes" in updated:
                checks.max_event_bytes("streamtap_max_event_bytes", ctx.options.streamtap_max_event_bytes)
            if "streamtap_decode_window" in updated:
                self.coalescer.window = checks.decode_window("streamtap_decode_window",
                                                             ctx.options.streamtap_decode_window)
            if "streamtap_idle_timeout" in updated:
                self.idle_timeout = checks.seconds("streamtap_idle_timeout", ctx.options.streamtap_idle_timeout)
        except ConfigError as e:
            raise exceptions.OptionsError(str(e)) from None

    def running(self) -> None:
        self._stall_watch = asyncio_utils.create_task(
            self._watch_stalls(), name="streamtap stall watch", keep_ref=True
        )

    async def _watch_stalls(self) -> None:
        while True:
            timeout = self.idle_timeout
            await asyncio.sleep(min(1.0, timeout / 4))
            self.taps.check_stalls(timeout)  # the decoder process watches its own

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        provider = flow.metadata.get(PROVIDER)
        if provider is None or flow.response is None:
            return
        response = flow.response
        upgrade = flow.request.headers.get("upgrade", "").lower() == "websocket"
        if response.status_code == 101 or (provider in WEBSOCKET_ONLY and not upgrade):
            return  # a WebSocket's answers are streams (websocket_capture.py), its handshake is not
        flow_tap = self._taps.open(flow.id, request_info(flow, provider), response_info(response), provider,
                                   ctx.options.streamtap_max_event_bytes)
        flow.metadata[STREAM_ID] = flow_tap.stream_id
        response.stream = flow_tap

    def response(self, flow: http.HTTPFlow) -> None:
        # Normally done by the final b"" chunk; this covers bodies that never streamed.
        self._taps.end(flow.id)

    def error(self, flow: http.HTTPFlow) -> None:
        if flow.error is None:
            self._taps.forget(flow.id)
            return
        message = flow.error.msg
        by = aborted_by(message)
        if not self._taps.abort(flow.id, by, message) and flow.response is None and by == "upstream" \
                and (provider := flow.metadata.get(PROVIDER)) is not None:
            flow.metadata[STREAM_ID] = self._taps.no_answer(request_info(flow, provider), message)

    def done(self) -> None:
        if self._stall_watch is not None:
            self._stall_watch.cancel()
        self.taps.shutdown()  # in the decoder process, its own StreamCapture does this

"""Every default of streamtap's settings, once. The configuration file, the mitmproxy
options the addons declare, the hub, the API and the command line read them here."""

from __future__ import annotations

from proxy_core.wire.sse import DEFAULT_MAX_EVENT_BYTES  # a framing limit, so the wire layer's own

LISTEN = "127.0.0.1:8080"
CERTS_DIR = "certs"
API_SOCKET = "run/streamtap.sock"
BUFFER_EVENTS = 100_000  # events in the hub's ring, each its JSON: ~1 KB
MAX_MESSAGE_CHARS = 4_000_000  # per stream: far above any model's longest answer
READER_MAX_LAG = 10_000  # events an API reader may fall behind before it is cut off
MAX_READERS = 64  # API readers served at once
IDLE_TIMEOUT = 60.0  # seconds without bytes before stream.stall
DECODE_WINDOW = 0.0005  # seconds; docs/benchmarks.md shows what it trades
MAX_DECODE_WINDOW = 0.1  # beyond this, readers would lag visibly
MAX_EVENT_BYTES = DEFAULT_MAX_EVENT_BYTES
DECODER_PROCESS = "auto"  # decode in a second process when there are cores for it
DECODER_PROCESS_MODES = ("auto", "on", "off")
DECODER_PROCESS_MIN_CPUS = 4  # for auto: the proxy, the decoder, and room for the clients beside them

__all__ = ["API_SOCKET", "BUFFER_EVENTS", "CERTS_DIR", "DECODE_WINDOW", "DECODER_PROCESS", "DECODER_PROCESS_MIN_CPUS",
           "DECODER_PROCESS_MODES", "IDLE_TIMEOUT", "LISTEN", "MAX_DECODE_WINDOW",
           "MAX_EVENT_BYTES", "MAX_MESSAGE_CHARS", "MAX_READERS", "READER_MAX_LAG"]

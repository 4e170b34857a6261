"""The HTTP API over the hub (tornado): handlers, the reader pump, the live page, the
server's limits, and re-serving a capture. Nothing here imports mitmproxy."""

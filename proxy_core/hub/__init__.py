"""The hub: the ring of events with its per-stream index, sequencing, stream records,
the envelope's JSON and the notices readers get. Consumers (the API's readers, the
capture writer) plug in as listeners; no tornado, no mitmproxy."""

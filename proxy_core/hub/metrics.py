"""Counters for GET /metrics, in Prometheus text format. Plain integers and floats:
updating them is a few additions on the proxy's loop."""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter

# Distinct (provider, provider_type) pairs counted; the rest are counted as "other",
# so a provider inventing names cannot grow /metrics without bound.
MAX_PROVIDER_EVENT_KINDS = 200

# Seconds spent in the tap for one chunk (content decoding through publishing).
TAP_BUCKETS = (0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1)


class Metrics:
    def __init__(self) -> None:
        self.events: Counter[str] = Counter()  # by type
        self.streams: Counter[tuple[str, str]] = Counter()  # by (provider, outcome)
        self.wire_bytes = 0
        self.body_bytes = 0
        self.gaps = 0
        self.cutoffs = 0
        # API requests refused, by reason: host, origin, csrf, token, readers, stalled
        self.api_refused: Counter[str] = Counter()
        self.sink_sent: Counter[str] = Counter()  # events each sink's broker confirmed
        self.sink_gaps: Counter[str] = Counter()  # events a sink dropped (its spool was full)
        # provider.event payloads, by (provider, provider_type): what normalizers did not know
        self.provider_events: Counter[tuple[str, str]] = Counter()
        self.tap_buckets = [0] * (len(TAP_BUCKETS) + 1)
        self.tap_sum = 0.0
        self.tap_count = 0

    def count_provider_event(self, provider: str, provider_type: str) -> None:
        key = (provider, provider_type)
        if key not in self.provider_events and len(self.provider_events) >= MAX_PROVIDER_EVENT_KINDS:
            key = (provider, "other")
        self.provider_events[key] += 1

    def observe_tap(self, seconds: float) -> None:
        self.tap_buckets[bisect_left(TAP_BUCKETS, seconds)] += 1
        self.tap_sum += seconds
        self.tap_count += 1

    def render(self, active_streams: int, subscribers: int, last_offset: int) -> str:
        out: list[str] = []

        def family(name: str, kind: str, help_text: str) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")

        family("streamtap_events_total", "counter", "Events published, by type.")
        out += [f'streamtap_events_total{{type="{t}"}} {n}' for t, n in sorted(self.events.items())]
        family("streamtap_api_refused_total", "counter",
               "API requests refused (host, origin, csrf, token, readers) and readers closed (stalled).")
        out += [f'streamtap_api_refused_total{{reason="{r}"}} {n}' for r, n in sorted(self.api_refused.items())]
        family("streamtap_sink_sent_total", "counter", "Events a sink's broker confirmed, by sink.")
        out += [f'streamtap_sink_sent_total{{sink="{k}"}} {n}' for k, n in sorted(self.sink_sent.items())]
        family("streamtap_sink_gap_events_total", "counter", "Events a sink dropped because its spool was full.")
        out += [f'streamtap_sink_gap_events_total{{sink="{k}"}} {n}' for k, n in sorted(self.sink_gaps.items())]
        family("streamtap_streams_total", "counter", "Finished streams, by provider and outcome.")
        out += [
            f'streamtap_streams_total{{provider="{p}",outcome="{o}"}} {n}'
            for (p, o), n in sorted(self.streams.items())
        ]
        family("streamtap_provider_events_total", "counter",
               "provider.event events (what a normalizer did not know), by provider and provider type.")
        out += [
            f'streamtap_provider_events_total{{provider="{_label(p)}",provider_type="{_label(t)}"}} {n}'
            for (p, t), n in sorted(self.provider_events.items())
        ]
        for name, kind, help_text, value in (
            ("streamtap_decode_errors_total", "counter", "decode.error events published.",
             self.events.get("decode.error", 0)),
            ("streamtap_active_streams", "gauge", "Streams being captured now.", active_streams),
            ("streamtap_wire_bytes_total", "counter", "Response body bytes tapped, as received.", self.wire_bytes),
            ("streamtap_body_bytes_total", "counter", "Response body bytes after content decoding.", self.body_bytes),
            ("streamtap_subscribers", "gauge", "API readers connected now.", subscribers),
            ("streamtap_gaps_total", "counter", "Gap notices sent to readers.", self.gaps),
            ("streamtap_cutoffs_total", "counter", "Readers cut off for falling behind.", self.cutoffs),
            ("streamtap_last_offset", "gauge", "Offset of the newest event.", last_offset),
        ):
            family(name, kind, help_text)
            out.append(f"{name} {value}")
        family("streamtap_tap_seconds", "histogram", "Time spent decoding and publishing one stream's batch of chunks.")
        cumulative = 0
        for bound, count in zip((*TAP_BUCKETS, float("inf")), self.tap_buckets, strict=True):
            cumulative += count
            le = "+Inf" if bound == float("inf") else repr(bound)
            out.append(f'streamtap_tap_seconds_bucket{{le="{le}"}} {cumulative}')
        out.append(f"streamtap_tap_seconds_sum {self.tap_sum:.9f}")
        out.append(f"streamtap_tap_seconds_count {self.tap_count}")
        return "\n".join(out) + "\n"


def _label(value: str) -> str:
    """A Prometheus label value: backslash, quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

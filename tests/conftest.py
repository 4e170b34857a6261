from __future__ import annotations

import os
import socket

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

settings.register_profile(
    "default", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "ci", max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@st.composite
def chunkings(draw, data: bytes) -> list[bytes]:
    """`data` cut at arbitrary points: sometimes one byte at a time, usually random cuts."""
    if not data:
        return [data]
    if draw(st.integers(0, 9)) == 0:
        return [data[i : i + 1] for i in range(len(data))]
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(data) - 1)), max_size=min(60, len(data)))))
    edges = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:], strict=False) if b > a]


def one_byte_at_a_time(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def feed_all(decoder, chunks: list[bytes]) -> list:
    """Everything a sans-IO decoder (feed/close) makes of `chunks`."""
    out = []
    for chunk in chunks:
        out += decoder.feed(chunk)
    return out + decoder.close()


@pytest.fixture
def busy_port():
    """A loopback port something already listens on."""
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        yield busy.getsockname()[1]
    finally:
        busy.close()

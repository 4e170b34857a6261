"""The decoder process's channel: frames come back whole and in order, however the
socket's reads split them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy_core.pipeline.channel import (
    CHUNK,
    CONTROL,
    FROM_CLIENT,
    IS_TEXT,
    WS_MESSAGE,
    ChannelError,
    ChannelReader,
    chunk_header,
    control,
    decode_control,
    ws_header,
)

FRAMES = st.lists(
    st.one_of(
        st.tuples(st.just(CHUNK), st.integers(0, 2**32 - 1), st.binary(max_size=300)),
        st.tuples(st.just(CONTROL), st.just(0), st.lists(st.one_of(st.text(), st.integers(), st.none()),
                                                       max_size=4)),
        st.tuples(st.just(WS_MESSAGE), st.integers(0, 2**32 - 1), st.binary(max_size=100)),
    ),
    max_size=30,
)


def encode(frames) -> tuple[bytes, list[tuple[int, int, bytes]]]:
    wire, expected = [], []
    for kind, key, body in frames:
        if kind == CHUNK:
            wire += [chunk_header(key, len(body)), body]
            expected.append((CHUNK, key, body))
        elif kind == CONTROL:
            frame = control("op", *body)
            wire.append(frame)
            expected.append((CONTROL, 0, frame[9:]))
        else:
            wire += [ws_header(key, len(body), True, False), body]
            expected.append((WS_MESSAGE | FROM_CLIENT, key, body))
    return b"".join(wire), expected


@given(FRAMES, st.lists(st.integers(0, 400), max_size=40))
def test_any_split_reads_the_same_frames(frames, cuts):
    wire, expected = encode(frames)
    points = sorted({min(c, len(wire)) for c in cuts})
    reader, got, last = ChannelReader(), [], 0
    for point in [*points, len(wire)]:
        got += reader.feed(wire[last:point])
        last = point
    assert got == expected
    assert reader.pending == 0


@given(FRAMES)
def test_one_byte_at_a_time(frames):
    wire, expected = encode(frames)
    reader, got = ChannelReader(), []
    for i in range(len(wire)):
        got += reader.feed(wire[i : i + 1])
    assert got == expected


def test_control_frames_round_trip():
    frame = control("open", 7, "abc123", {"host": "api.openai.com", "headers": {"a": "b"}}, None, 8 << 20)
    ((kind, key, body),) = ChannelReader().feed(frame)
    assert kind == CONTROL and key == 0
    assert decode_control(body) == ["open", 7, "abc123", {"host": "api.openai.com", "headers": {"a": "b"}}, None,
                                    8 << 20]


def test_what_msgpack_cannot_hold_goes_as_its_repr():
    ((_, _, body),) = ChannelReader().feed(control("open", {"max_tokens": 10**30, "n": [2**70, 1]}))
    assert decode_control(body) == ["open", {"max_tokens": str(10**30), "n": [str(2**70), 1]}]


def test_websocket_flags():
    assert ws_header(3, 0, True, True)[4] == WS_MESSAGE | FROM_CLIENT | IS_TEXT
    assert ws_header(3, 0, False, False)[4] == WS_MESSAGE


def test_a_frame_past_the_limit_is_refused():
    with pytest.raises(ChannelError, match="a frame of 2000 bytes"):
        ChannelReader(max_frame=1000).feed(chunk_header(1, 2000))


@pytest.mark.parametrize("body", [b"\xc1", b"\x90", b"\x91\x01"])  # not msgpack; []; [1]
def test_a_control_frame_that_is_not_op_args_is_refused(body):
    with pytest.raises(ChannelError):
        decode_control(body)

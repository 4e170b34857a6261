"""Google's length-prefixed frames (wire/length_prefixed.py): lengths in UTF-16 code
units, any chunking, malformed frames reported and skipped. The bodies are constructed
to the readers in HanaokaYuzu/Gemini-API (utils/parsing.py) and gpt4free (gemini_utils.py)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from proxy_core.wire.errors import WireError
from proxy_core.wire.json_stream import JsonDocument
from proxy_core.wire.length_prefixed import LengthPrefixedDecoder, chars_for_units, utf16_units
from tests.conftest import chunkings, feed_all, one_byte_at_a_time
from tests.support.webapps import google_frame

VALUES = [[["wrb.fr", None, "[1]"]], {"a": "caf\u00e9 \U0001f600\U0001f600"}, ["\u2615" * 40, "x"], [[], [None]]]


def body(values, xssi=True, trailing_inside=True) -> bytes:
    head = ")]}'\n" if xssi else ""
    return (head + "".join(google_frame(v, trailing_inside) for v in values)).encode()


def values_of(out) -> list:
    return [d.value for d in out if isinstance(d, JsonDocument)]


def test_lengths_count_utf16_units_not_characters_or_bytes():
    frame = google_frame({"t": "\U0001f600"})  # one character, two units, four bytes
    digits = frame.split("\n", 1)[0]
    assert int(digits) == len("\n" + json.dumps({"t": "\U0001f600"}, ensure_ascii=False, separators=(",", ":")) + "\n") + 1
    assert values_of(feed_all(LengthPrefixedDecoder(), [body([{"t": "\U0001f600"}])])) == [{"t": "\U0001f600"}]


def test_pinned_body_whole_and_byte_by_byte():
    data = body(VALUES)
    for chunks in ([data], one_byte_at_a_time(data)):
        out = feed_all(LengthPrefixedDecoder(), chunks)
        assert values_of(out) == VALUES
        assert not [e for e in out if isinstance(e, WireError)]


def test_offsets_are_body_bytes():
    data = body(VALUES)
    out = feed_all(LengthPrefixedDecoder(), [data])
    for doc in out:
        assert data[doc.at_byte:].split(b"\n", 1)[0].isdigit()


@given(st.data(), st.booleans(), st.booleans())
def test_any_chunking(data, xssi, trailing_inside):
    values = data.draw(st.lists(st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=3), kids, max_size=3),
        max_leaves=6), min_size=1, max_size=5))
    values = [v for v in values if v is not None] or [[]]
    wire = body(values, xssi, trailing_inside)
    out = feed_all(LengthPrefixedDecoder(), data.draw(chunkings(wire)))
    assert values_of(out) == values
    assert not [e for e in out if isinstance(e, WireError)]


def test_cuts_inside_every_utf8_character():
    wire = body(VALUES)
    for cut in range(1, len(wire)):
        if wire[cut] & 0xC0 == 0x80:  # a continuation byte: the cut splits a character
            assert values_of(feed_all(LengthPrefixedDecoder(), [wire[:cut], wire[cut:]])) == VALUES


def test_malformed_length_and_json_are_reported_and_decoding_goes_on():
    good = google_frame([1, 2])
    wire = (")]}'\n" + "garbage line\n" + good + "7\n{nope\n" + google_frame(["after"])).encode()
    out = feed_all(LengthPrefixedDecoder(), one_byte_at_a_time(wire))
    errors = [e for e in out if isinstance(e, WireError)]
    assert values_of(out) == [[1, 2], ["after"]]
    assert len(errors) == 2
    assert "expected a frame length" in errors[0].message and "garbage line" in errors[0].message
    assert "not JSON" in errors[1].message and "{nope" in errors[1].message


def test_body_ending_inside_a_frame_is_an_error():
    wire = (")]}'\n" + google_frame(["whole"]) + "40\n[\"cut").encode()
    out = feed_all(LengthPrefixedDecoder(), [wire])
    assert values_of(out) == [["whole"]]
    assert [e for e in out if isinstance(e, WireError)][0].message.startswith("google frames: body ended inside a frame")


def test_oversized_frame_is_skipped_with_memory_bounded():
    big = google_frame(["x" * 5000])
    wire = (")]}'\n" + big + google_frame(["small"])).encode()
    dec = LengthPrefixedDecoder(max_event_bytes=1000)
    out = []
    for chunk in [wire[i:i + 100] for i in range(0, len(wire), 100)]:
        out += dec.feed(chunk)
        assert len(dec._buf) <= 1100
    out += dec.close()
    assert values_of(out) == [["small"]]
    assert "larger than 1000" in [e for e in out if isinstance(e, WireError)][0].message


def test_a_length_that_ends_inside_a_surrogate_pair_takes_the_whole_character():
    text = '\n["\U0001f600"]'
    wire = f")]}}'\n{utf16_units(text) - 3}{text}".encode()  # 3 short: ends inside the emoji
    out = feed_all(LengthPrefixedDecoder(), [wire])
    assert [e for e in out if isinstance(e, WireError)]  # the rest is not JSON: reported, not a crash


def test_chars_for_units():
    assert chars_for_units("a\U0001f600b", 3) == (2, 3)
    assert chars_for_units("a\U0001f600b", 2) == (1, 1)
    assert chars_for_units("abc", 10) == (3, 3)

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from proxy_core.wire.errors import WireError
from proxy_core.wire.sse import ServerSentEvent, SSEDecoder
from tests.conftest import chunkings, feed_all, one_byte_at_a_time


def decode(chunks: list[bytes], **kwargs) -> list:
    return feed_all(SSEDecoder(**kwargs), chunks)


def datas(events: list) -> list[str]:
    return [e.data for e in events if isinstance(e, ServerSentEvent)]


def test_whatwg_fields_and_line_ends():
    body = (
        b"\xef\xbb\xbf: a comment first, after a BOM\r\n"
        b"event: add\r\nid: 7\r\nretry: 1500\r\ndata: one\r\ndata:two\r\n\r\n"
        b"data: lf only\n\n"
        b"data: cr only\r\r"
        b"data\n\n"  # a field with no colon: empty value
        b"id: 8\nevent: x\ndata:  two spaces keep one\n\n"
        b"event: nodata\n\n"  # no data: not dispatched
        b"retry: soon\ndata: z\n\n"
    )
    events = decode([body])
    at = body.index
    assert events == [
        ServerSentEvent("one\ntwo", "add", "7", 1500, at_byte=at(b"event: add")),
        ServerSentEvent("lf only", "message", "7", 1500, at_byte=at(b"data: lf")),
        ServerSentEvent("cr only", "message", "7", 1500, at_byte=at(b"data: cr")),
        ServerSentEvent("", "message", "7", 1500, at_byte=at(b"data\n")),
        ServerSentEvent(" two spaces keep one", "x", "8", 1500, at_byte=at(b"id: 8")),
        ServerSentEvent("z", "message", "8", 1500, at_byte=at(b"retry: soon")),
    ]


def test_id_with_nul_is_ignored_and_empty_id_resets():
    events = decode([b"id: a\x00b\ndata: 1\n\nid\ndata: 2\n\n"])
    assert [(e.data, e.id) for e in events] == [("1", None), ("2", "")]


def test_bom_only_stripped_at_stream_start():
    events = decode([b"data: a\n\n\xef\xbb\xbfdata: b\n\n"])
    assert datas(events) == ["a"]  # the second line's field name is "\ufeffdata"


def test_last_event_without_blank_line_is_kept():
    assert datas(decode([b"data: a\n\ndata: tail"])) == ["a", "tail"]


def test_invalid_utf8_becomes_replacement_character():
    assert datas(decode([b"data: \xff\xfe ok\n\n"])) == ["\ufffd\ufffd ok"]


def test_oversized_event_is_skipped_and_decoding_goes_on():
    big = b"data: " + b"x" * 5000 + b"\ndata: more\n\n"
    body = b"data: before\n\n" + big + b"data: after\n\n"
    for chunks in ([body], one_byte_at_a_time(body)):
        events = decode(chunks, max_event_bytes=1024)
        assert datas(events) == ["before", "after"]
        errors = [e for e in events if isinstance(e, WireError)]
        assert len(errors) == 1 and "larger than 1024" in errors[0].message


def test_oversized_line_keeps_memory_bounded():
    decoder = SSEDecoder(max_event_bytes=1024)
    decoder.feed(b"data: ")
    for _ in range(100):
        decoder.feed(b"y" * 1000)
        assert decoder.buffered <= 1024
    assert datas(decoder.feed(b"\n\ndata: ok\n\n")) == ["ok"]


SAMPLE = (
    b"\xef\xbb\xbf:comment\r\nevent: e\r\ndata: caf\xc3\xa9 \xf0\x9f\x8e\x89\r\n\r\n"
    b"data: {\"a\": 1}\n\n: ping\n\nid: 5\rdata: cr\r\rdata: x\r\ndata: y\r\n\r\ndata: end"
)


@given(chunkings(SAMPLE))
def test_any_chunking_gives_the_same_events(chunks):
    assert decode(chunks) == decode([SAMPLE])


@given(st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"data: \xc3\xa9", b"event: t", b":c", b"id: 1"]), max_size=40),
       st.data())
def test_line_end_soup_is_chunk_invariant(parts, data):
    body = b"".join(parts)
    assert decode(data.draw(chunkings(body))) == decode([body])


def reference_decode(body: bytes) -> list[ServerSentEvent]:
    """The WHATWG algorithm written plainly, on the whole body at once: each line is
    decoded to text before it is parsed. The decoder splits lines in bulk and parses
    them as bytes; both must give the same events, with the same offsets."""
    lines, at = [], 0
    for m in re.finditer(rb"\r\n|\r|\n", body):
        lines.append((body[at : m.start()], at))
        at = m.end()
    if body[at:]:
        lines.append((body[at:], at))  # the last line, ended by the end of the body
    lines.append((b"", len(body)))  # the end of the body dispatches what is pending
    if lines[0][0].startswith(b"\xef\xbb\xbf"):
        lines[0] = (lines[0][0][3:], lines[0][1])
    events, data, event_type, last_id, retry, event_at = [], [], "", None, None, None
    for raw, line_at in lines:
        line = raw.decode("utf-8", errors="replace")
        if not line:
            if data:
                events.append(ServerSentEvent("\n".join(data), event_type or "message", last_id, retry, event_at or 0))
            data, event_type, event_at = [], "", None
            continue
        if line.startswith(":"):
            continue
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if event_at is None:
            event_at = line_at
        if name == "data":
            data.append(value)
        elif name == "event":
            event_type = value
        elif name == "id" and "\0" not in value:
            last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            retry = int(value)
    return events


# Line ends, BOMs, colons and spaces, field names, a multibyte character (cut anywhere
# by the chunking), invalid UTF-8 and a truncated sequence before a colon or line end.
SSE_PIECES = [b"\r", b"\n", b"\r\n", b"\n\n", b":", b" ", b"data", b"data: ", b"event", b"id", b"retry", b"12",
              b"\x00", b"\xef\xbb\xbf", b"\xf0\x9f\x8e\x89", b"\xc3\xa9", b"\xff", b"\xe2\x82", b"x"]


@given(st.lists(st.sampled_from(SSE_PIECES), max_size=60), st.data())
def test_bulk_byte_parsing_equals_the_plain_text_algorithm(pieces, data):
    body = b"".join(pieces)
    assert decode(data.draw(chunkings(body))) == reference_decode(body)


@given(st.binary(max_size=300), st.data())
def test_any_bytes_any_chunking_equal_the_plain_text_algorithm(body, data):
    assert decode(data.draw(chunkings(body))) == reference_decode(body)


def test_cr_ending_a_chunk_and_lf_starting_the_next_are_one_line_end():
    body = b"data: a\r\n\r\ndata: b\r\n\r\n"
    for cut in range(1, len(body)):
        assert decode([body[:cut], body[cut:]]) == reference_decode(body)
    assert decode([b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]) == [ServerSentEvent("a\nb")]


def test_a_character_cut_between_chunks_is_decoded_whole():
    body = "data: é🎉\n\n".encode()
    for cut in range(1, len(body)):
        assert datas(decode([body[:cut], body[cut:]])) == ["é🎉"]


def test_an_absurd_retry_is_ignored_not_an_error():
    events = SSEDecoder().feed(b"retry: " + b"9" * 5000 + b"\ndata: x\n\n")
    assert [(e.data, e.retry) for e in events] == [("x", None)]


@given(chunkings(b"\xef\xbb\xbfdata: " + b"x" * 1010 + b"\n\ndata: y\n\n"))
def test_a_bom_does_not_count_toward_the_event_size_limit_at_any_chunking(chunks):
    events = decode(chunks, max_event_bytes=1017)  # the first line and its LF: exactly 1017 bytes
    assert [e.data for e in events if isinstance(e, ServerSentEvent)] == ["x" * 1010, "y"]

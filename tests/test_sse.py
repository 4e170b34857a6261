from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from proxy_core.decoders.sse import ServerSentEvent, SSEDecoder
from proxy_core.events import DecodeError

from .conftest import chunkings, one_byte_at_a_time


def decode(chunks: list[bytes], **kwargs) -> list:
    decoder = SSEDecoder(**kwargs)
    out = []
    for chunk in chunks:
        out += decoder.feed(chunk)
    return out + decoder.close()


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
        errors = [e for e in events if isinstance(e, DecodeError)]
        assert len(errors) == 1 and "larger than 1024" in errors[0].message


def test_oversized_line_keeps_memory_bounded():
    decoder = SSEDecoder(max_event_bytes=1024)
    decoder.feed(b"data: ")
    for _ in range(100):
        decoder.feed(b"y" * 1000)
        assert len(decoder._buf) <= 1024
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

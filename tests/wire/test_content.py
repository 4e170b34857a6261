from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy_core.wire.content import ContentDecodingError, content_decoder
from tests.conftest import chunkings
from tests.support.fixtures import ENCODINGS, encode, header_for

PLAIN = ("data: héllo 🎉\n\n" * 200).encode()


def decode_all(coding: str, chunks: list[bytes]) -> bytes:
    decoder = content_decoder(coding)
    return b"".join(decoder.decode(c) for c in chunks) + decoder.flush()


@pytest.mark.parametrize("coding", ENCODINGS)
def test_each_encoding_round_trips(coding):
    assert decode_all(header_for(coding), [encode(PLAIN, coding)]) == PLAIN


@pytest.mark.parametrize("coding", ENCODINGS)
@given(data=st.data())
def test_any_chunking_of_compressed_bytes(coding, data):
    wire = encode(PLAIN, coding)
    # Cuts fall anywhere in the compressed bytes, inside compressed blocks too.
    assert decode_all(header_for(coding), data.draw(chunkings(wire))) == PLAIN


@pytest.mark.parametrize("coding", ENCODINGS)
def test_compressed_one_byte_at_a_time(coding):
    wire = encode(PLAIN, coding)
    assert decode_all(header_for(coding), [wire[i : i + 1] for i in range(len(wire))]) == PLAIN


def test_concatenated_gzip_members_and_zstd_frames():
    assert decode_all("gzip", [encode(b"ab", "gzip") + encode(b"cd", "gzip")]) == b"abcd"
    assert decode_all("zstd", [encode(b"ab", "zstd") + encode(b"cd", "zstd")]) == b"abcd"


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "zstd"])
def test_truncated_body_is_an_error(coding):
    wire = encode(PLAIN, coding)
    decoder = content_decoder(coding)
    decoder.decode(wire[: len(wire) // 2])
    with pytest.raises(ContentDecodingError, match="truncated"):
        decoder.flush()


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "zstd"])
def test_corrupt_body_is_an_error(coding):
    with pytest.raises(ContentDecodingError):
        decode_all(coding, [b"\x00\x01 this is not compressed at all \xff" * 4])


def test_unknown_coding_is_refused():
    with pytest.raises(ContentDecodingError, match="unsupported content-encoding 'compress'"):
        content_decoder("compress")


def test_identity_and_empty_headers():
    assert decode_all("identity", [b"x"]) == b"x"
    assert decode_all("", [b"x"]) == b"x"


@pytest.mark.parametrize("coding", ["gzip", "zstd"])
@given(data=st.data())
def test_any_chunking_of_several_members_or_frames(coding, data):
    # A cut may fall exactly on a frame boundary, or a chunk may end one frame and
    # start the next.
    wire = encode(PLAIN[:700], coding) + encode(PLAIN[700:], coding) + encode(b"!", coding)
    assert decode_all(coding, data.draw(chunkings(wire))) == PLAIN + b"!"

"""Request bodies (Codex sends zstd to chatgpt.com): decoded, bounded, for the request
summary in stream.start; a bomb or garbage never breaks anything."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy_core.pipeline.request_summary import request_summary
from proxy_core.wire.content import ContentDecodingError, decode_bounded
from tests.support import agent_fixtures as af
from tests.support.fixtures import ENCODINGS, encode, header_for

BODY = json.dumps(af.CODEX_REQUEST).encode()


@pytest.mark.parametrize("coding", ENCODINGS)
def test_every_coding_decodes_to_the_body(coding):
    assert decode_bounded(encode(BODY, coding), header_for(coding), 1 << 20) == BODY
    assert request_summary(encode(BODY, coding), header_for(coding)) == {"model": "gpt-5-codex", "stream": True}


@pytest.mark.parametrize("coding", ["identity", "gzip", "br", "zstd"])
def test_a_bomb_is_refused_within_the_limit(coding):
    bomb = encode(b"\0" * (64 << 20), coding)
    with pytest.raises(ContentDecodingError, match="more than|larger than"):
        decode_bounded(bomb, coding, 1 << 20)
    summary = request_summary(bomb, coding, limit=1 << 20)
    assert summary["model"] is None and "body_error" in summary


@given(st.binary(max_size=200), st.sampled_from(["gzip", "br", "zstd", "deflate", "gzip, br", "x-unknown"]))
def test_garbage_bodies_give_a_body_error_never_an_exception(body, coding):
    summary = request_summary(body, coding)
    assert summary["model"] is None


def test_model_and_stream_from_the_path_and_the_body():
    path = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert request_summary(b'{"contents": []}', None, path) == {"model": "gemini-2.5-flash", "stream": True}
    codeassist = json.dumps({"model": "gemini-2.5-pro", "project": "p", "request": {"contents": []}}).encode()
    assert request_summary(codeassist, None, "/v1internal:generateContent") == {"model": "gemini-2.5-pro",
                                                                               "stream": False}
    assert request_summary(b'{"model": "claude-haiku-4-5", "stream": false}', None) == {
        "model": "claude-haiku-4-5", "stream": False}
    assert request_summary(b"[1, 2]", None) == {"model": None, "stream": None}
    assert request_summary(None, None) == {"model": None, "stream": None}

"""The tests every table of provider fixtures gets: the whole body and one byte at a time,
and any chunking in any content encoding, each against the fixture's expected answer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import chunkings, one_byte_at_a_time
from tests.providers.test_openai import assert_matches, run_tap
from tests.support.fixtures import ENCODINGS, Fixture, encode

Cases = dict[str, tuple[str, str, Fixture]]  # name -> (provider, content type, fixture)


def fixture_tests(cases: Cases) -> tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any]]:
    """(tap, test_fixture_whole_and_byte_by_byte, test_any_chunking_in_any_encoding) for
    `cases`; a module assigns the two tests to module names for pytest to collect."""

    def tap(name: str, chunks: list[bytes], coding: str = "identity"):
        provider, content_type, _ = cases[name]
        return run_tap(chunks, coding, content_type=content_type, provider=provider)

    @pytest.mark.parametrize("name", cases)
    def test_fixture_whole_and_byte_by_byte(name):
        fx = cases[name][2]
        assert_matches(*tap(name, [fx.body]), fx)
        assert_matches(*tap(name, one_byte_at_a_time(fx.body)), fx)

    @pytest.mark.parametrize("name", cases)
    @pytest.mark.parametrize("coding", ENCODINGS)
    @given(data=st.data())
    def test_any_chunking_in_any_encoding(name, coding, data):
        fx = cases[name][2]
        wire = encode(fx.body, coding)
        payloads, outcome = tap(name, data.draw(chunkings(wire)), coding)
        assert payloads == tap(name, [wire], coding)[0]
        assert_matches(payloads, outcome, fx)

    return tap, test_fixture_whole_and_byte_by_byte, test_any_chunking_in_any_encoding

"""Tests: framing and content decoding, alone."""

"""Tests: the streamtap command."""

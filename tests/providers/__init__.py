"""Tests: the normalizers, through the tap."""

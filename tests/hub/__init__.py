"""Tests: the ring, its index and the hub's bookkeeping."""

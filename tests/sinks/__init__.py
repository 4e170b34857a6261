"""Tests: the sinks' spool, alone (the brokers are tested against real servers in tests/e2e/test_sinks.py)."""

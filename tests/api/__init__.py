"""Tests: the API: delivery guarantees and its guards."""

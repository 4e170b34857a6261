"""Tests: the CA, trust stores and the client bundle."""

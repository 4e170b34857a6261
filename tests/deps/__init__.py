"""Checks of the project's declared dependencies (make lint, make check-deps)."""

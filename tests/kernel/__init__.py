"""Kernel-side tests. A package so that its conftest is imported as kernel.conftest and
does not clash with tests/conftest.py, which pytest imports as `conftest`."""

"""Runnable examples of pytest-dockervol (``python -m pytest examples``).

This file makes ``examples`` a package so that its ``conftest.py`` is imported as
``examples.conftest`` and does not replace ``tests/conftest.py`` (imported as plain
``conftest``) when both directories run in one session: ``pytest tests examples``.
"""

"""Volumes built once and reused: run-wide shared volumes and the golden cache across runs.
Imports the ground, ``_engine``, ``_seeding`` and ``_volumes``."""

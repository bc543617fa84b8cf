"""The volumes a test holds (named, anonymous, host, clones and snapshots), their helper
containers, copy-on-write layers, and the containers a test runs. Imports the ground,
``_engine`` and ``_seeding``."""

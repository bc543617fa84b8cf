"""Where the plugin keeps its per-session state: the config's stash."""

from __future__ import annotations

import pytest

from ._factory import VolumeFactory

factory_key = pytest.StashKey[VolumeFactory]()

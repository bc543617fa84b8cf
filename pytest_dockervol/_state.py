"""Where the plugin keeps its per-session state: the config's stash."""

from __future__ import annotations

import pytest

from ._factory import VolumeFactory
from ._runs.lease import RunLease
from ._runs.watchdog import Watchdog

factory_key = pytest.StashKey[VolumeFactory]()
lease_key = pytest.StashKey[RunLease]()
watchdog_key = pytest.StashKey[Watchdog]()

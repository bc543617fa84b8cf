"""The directory this user's runs share on this machine: leases, locks, probe verdicts."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .._errors import DockervolUsageError


def state_dir() -> Path:
    """The directory this user's runs share (leases, shared-volume locks), private to the
    user like pytest's ``pytest-of-<user>``: another user's runs are judged by pid and age."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    path = Path(tempfile.gettempdir()) / f"pytest-dockervol-{uid}"
    path.mkdir(mode=0o700, exist_ok=True)
    if hasattr(os, "getuid") and path.lstat().st_uid != uid:
        raise DockervolUsageError(
            f"{path} belongs to another user; remove it or point TMPDIR elsewhere"
        )
    return path

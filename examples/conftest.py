"""Shared by the examples: the image their containers run.

pytest-dockervol never pulls an image. Build the local busybox image with
``bash .ci/build-images.sh``, or ``docker pull busybox`` and set
``DOCKERVOL_IMAGE=busybox:latest``.
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def image() -> str:
    """A runnable busybox image that is already on the Docker engine."""
    return os.environ.get("DOCKERVOL_IMAGE", "pytest-dockervol-test/busybox:latest")

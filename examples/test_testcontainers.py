"""A Testcontainers for Python container on a plugin volume: adopt the volumes alone.

Testcontainers starts, waits for and stops the container; pytest-dockervol creates, seeds,
reads back and removes the volume it mounts.
"""

from __future__ import annotations

import os

# Ryuk, Testcontainers' reaper, is a container of an image it would pull; pytest-dockervol
# removes what it creates itself. Set before the import: some 4.x versions read it then.
os.environ["TESTCONTAINERS_RYUK_DISABLED"] = "true"

from docker import DockerClient
from testcontainers.core.container import DockerContainer

from pytest_dockervol import NamedVolume


def test_testcontainers_container_on_a_seeded_volume(
    named_volume: NamedVolume, image: str, dockervol_client: DockerClient
) -> None:
    named_volume.seed({"orders.csv": "1,paid\n2,open\n3,paid\n"})
    # Testcontainers pulls a missing image: this raises ImageNotFound instead.
    dockervol_client.images.get(image)

    container = (
        DockerContainer(image)
        .with_command(["sh", "-c", "grep -c ',paid$' /data/orders.csv > /data/paid.txt"])
        .with_volume_mapping(named_volume.name, "/data", "rw")
    )
    with container:  # stopped and removed at the end of the block, before the volume
        assert container.get_wrapped_container().wait(timeout=60)["StatusCode"] == 0

    assert named_volume.read_text("paid.txt") == "2\n"

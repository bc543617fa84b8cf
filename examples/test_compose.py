"""A docker compose service on a seeded named_volume, declared `external: true` in its file."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from docker import DockerClient
from docker.errors import ImageNotFound

from pytest_dockervol import NamedVolume

COMPOSE_FILE = Path(__file__).parent / "compose" / "docker-compose.yml"

Compose = Callable[..., str]  # compose("up", ...) returns what docker-compose printed


@pytest.fixture
def compose(
    named_volume: NamedVolume, image: str, dockervol_client: DockerClient
) -> Iterator[Compose]:
    """Runs docker-compose on COMPOSE_FILE with named_volume as its `data` volume.

    Requesting named_volume makes this fixture's teardown (`down`) run before the volume's.
    """
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail("docker-compose not found: apt-get install docker-compose", pytrace=False)
    # Compose 1.29 pulls a missing image and has no way to forbid it: check first.
    try:
        dockervol_client.images.get(image)
    except ImageNotFound:
        pytest.fail(f"image {image} is not on the engine: bash .ci/build-images.sh", pytrace=False)

    project = f"dockervol-example-{uuid.uuid4().hex[:12]}"  # unique: parallel tests never meet
    env = {**os.environ, "DATA_VOLUME": named_volume.name, "IMAGE": image}

    def run(*args: str) -> str:
        command = [binary, "-p", project, "-f", str(COMPOSE_FILE), *args]
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            pytest.fail(f"docker-compose {args[0]} failed: {result.stderr.strip()}", pytrace=False)
        return result.stdout

    yield run
    run("down", "--remove-orphans")  # containers and network; an external volume stays


def test_compose_service_reads_and_writes_the_volume(
    compose: Compose, named_volume: NamedVolume
) -> None:
    named_volume.seed({"orders.csv": "1,paid\n2,open\n3,paid\n"})
    compose("up", "--no-build", "--abort-on-container-exit", "--exit-code-from", "report")
    assert named_volume.read_text("paid.txt") == "2\n"

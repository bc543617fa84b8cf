"""Configuration files seeded into a named volume and mounted read-only into a container."""

from __future__ import annotations

import pytest

from pytest_dockervol import ContainerRunner, NamedVolume, SeedFile

APP_CONF = "listen = 0.0.0.0:8080\nworkers = 4\n"
LOGGING_CONF = "level = debug\n"
CONFIG: dict[str, str | SeedFile] = {
    "app.conf": APP_CONF,
    "conf.d/logging.conf": LOGGING_CONF,
    "secrets/api-token": SeedFile("s3cr3t\n", mode=0o600),
}


@pytest.fixture
def config_volume(named_volume: NamedVolume) -> NamedVolume:
    """A fresh named volume holding CONFIG; removed after the test like any named_volume."""
    return named_volume.seed(CONFIG)


def test_container_reads_the_seeded_config(
    config_volume: NamedVolume, run_container: ContainerRunner, image: str
) -> None:
    container = run_container(
        image,
        ["cat", "/etc/app/app.conf", "/etc/app/conf.d/logging.conf"],
        mounts=[config_volume.mount("/etc/app", read_only=True)],
    )
    assert container.wait(timeout=60)["StatusCode"] == 0
    assert container.logs().decode() == APP_CONF + LOGGING_CONF


def test_container_cannot_write_the_config(
    config_volume: NamedVolume, run_container: ContainerRunner, image: str
) -> None:
    container = run_container(
        image,
        ["sh", "-c", "echo 'workers = 64' >> /etc/app/app.conf"],
        mounts=[config_volume.mount("/etc/app", read_only=True)],
    )
    assert container.wait(timeout=60)["StatusCode"] != 0
    assert "Read-only file system" in container.logs(stdout=False).decode()
    # Read back from the volume itself: the file is exactly as seeded.
    assert config_volume.read_text("app.conf") == APP_CONF


def test_seeded_files_have_default_modes_unless_set(
    config_volume: NamedVolume, run_container: ContainerRunner, image: str
) -> None:
    # The same read-only attachment, in the `volumes=` form of the Docker SDK.
    container = run_container(
        image,
        ["sh", "-c", "cd /etc/app && stat -c '%a %u:%g %n' conf.d app.conf secrets/api-token"],
        volumes=config_volume.volumes_dict("/etc/app", read_only=True),
    )
    assert container.wait(timeout=60)["StatusCode"] == 0
    assert container.logs().decode().splitlines() == [
        "755 0:0 conf.d",
        "644 0:0 app.conf",
        "600 0:0 secrets/api-token",
    ]
    assert config_volume.files() == ["app.conf", "conf.d/logging.conf", "secrets/api-token"]

"""A container writes its logs into a host directory; the test reads them from the host."""

from __future__ import annotations

import os

from pytest_dockervol import ContainerRunner, HostVolume

# Run the container as the user running pytest: the files it writes into the bind-mounted
# directory then belong to that user, so the test can read them and cleanup can delete them.
AS_HOST_USER = f"{os.getuid()}:{os.getgid()}"

APP = """
echo "starting worker" >> /logs/app.log
echo "GET /health 200" >> /logs/access/access.log
echo "GET /missing 404" >> /logs/access/access.log
echo "worker failed: disk full" >> /logs/app.log
exit 3
"""


def test_logs_are_readable_from_the_host(
    host_volume: HostVolume, run_container: ContainerRunner, image: str
) -> None:
    (host_volume.path / "access").mkdir()
    container = run_container(
        image, ["sh", "-c", APP], mounts=[host_volume.mount("/logs")], user=AS_HOST_USER
    )
    assert container.wait(timeout=60)["StatusCode"] == 3

    # host_volume.path is an ordinary pathlib.Path on the host.
    app_log = (host_volume.path / "app.log").read_text().splitlines()
    assert app_log == ["starting worker", "worker failed: disk full"]
    assert (host_volume.path / "app.log").stat().st_uid == os.getuid()


def test_files_lists_everything_the_container_wrote(
    host_volume: HostVolume, run_container: ContainerRunner, image: str
) -> None:
    container = run_container(
        image,
        ["sh", "-c", "mkdir -p /logs/access && " + APP],
        mounts=[host_volume.mount("/logs")],
        user=AS_HOST_USER,
    )
    container.wait(timeout=60)

    assert host_volume.files() == ["access/access.log", "app.log"]
    access = host_volume.read_text("access/access.log")
    assert [line.split()[-1] for line in access.splitlines()] == ["200", "404"]


def test_a_fresh_directory_for_every_test(host_volume: HostVolume) -> None:
    assert host_volume.files() == []

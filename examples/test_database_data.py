"""Database-style data in named volumes: it outlives containers, can be shared, has an owner."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from docker.models.containers import Container

from pytest_dockervol import ContainerRunner, NamedVolume, VolumeFactory

APPEND_ROW = 'cat /data/db.txt 2>/dev/null; echo "$ROW" >> /data/db.txt'


def finished(container: Container) -> str:
    """Wait for a container to exit successfully and return what it printed."""
    status = container.wait(timeout=60)["StatusCode"]
    output = container.logs().decode()
    assert status == 0, output
    return output


def test_rows_survive_a_new_container(
    named_volume: NamedVolume, run_container: ContainerRunner, image: str
) -> None:
    first = run_container(
        image,
        ["sh", "-c", APPEND_ROW],
        mounts=[named_volume.mount("/data")],
        environment={"ROW": "1,alice"},
    )
    assert finished(first) == ""

    # A second container on the same volume finds the first one's row.
    second = run_container(
        image,
        ["sh", "-c", APPEND_ROW],
        mounts=[named_volume.mount("/data")],
        environment={"ROW": "2,bob"},
    )
    assert finished(second) == "1,alice\n"
    assert named_volume.read_text("db.txt") == "1,alice\n2,bob\n"


def test_rows_survive_a_restart(
    named_volume: NamedVolume, run_container: ContainerRunner, image: str
) -> None:
    server = run_container(
        image,
        ["sh", "-c", "echo boot >> /data/boots.log"],
        mounts=[named_volume.mount("/data")],
    )
    finished(server)
    server.start()  # the same container again, on the same volume
    finished(server)
    assert named_volume.read_text("boots.log") == "boot\nboot\n"


# -- one seeded volume shared by every test of this module ---------------------------------

CUSTOMERS = "id,name,country\n1,alice,FR\n2,bob,DE\n3,carol,FR\n"


@pytest.fixture(scope="module")
def reference_data(volume_factory: VolumeFactory) -> Iterator[NamedVolume]:
    """Seeded once per module (once per xdist worker that runs these tests), mounted read-only."""
    volume = volume_factory.named(seed={"customers.csv": CUSTOMERS})
    yield volume
    volume.remove()


@pytest.mark.parametrize(("country", "count"), [("FR", 2), ("DE", 1), ("US", 0)])
def test_shared_reference_data(
    reference_data: NamedVolume,
    run_container: ContainerRunner,
    image: str,
    country: str,
    count: int,
) -> None:
    container = run_container(
        image,
        ["sh", "-c", f"grep -c ',{country}$' /ref/customers.csv || true"],
        mounts=[reference_data.mount("/ref", read_only=True)],
    )
    assert finished(container) == f"{count}\n"


def test_shared_reference_data_is_unchanged(reference_data: NamedVolume) -> None:
    assert reference_data.files() == ["customers.csv"]
    assert reference_data.read_text("customers.csv") == CUSTOMERS


# -- a data directory owned by the database user ---------------------------------------------

DB_UID = 999  # the uid the official postgres and mysql images run as


def test_seed_owned_by_the_database_user(
    named_volume: NamedVolume, run_container: ContainerRunner, image: str
) -> None:
    named_volume.seed(
        {"PG_VERSION": "16\n", "base/1/1259": b"\x00" * 8192},
        dest="pgdata",
        uid=DB_UID,
        gid=DB_UID,
        file_mode=0o600,
        dir_mode=0o700,
    )
    container = run_container(
        image,
        [
            "sh",
            "-c",
            "cd /var/lib/db && stat -c '%u:%g %a %n' pgdata pgdata/PG_VERSION pgdata/base/1/1259"
            " && echo started > pgdata/postmaster.pid",
        ],
        mounts=[named_volume.mount("/var/lib/db")],
        user=f"{DB_UID}:{DB_UID}",  # the database user can write its own data directory
    )
    assert finished(container).splitlines() == [
        "999:999 700 pgdata",
        "999:999 600 pgdata/PG_VERSION",
        "999:999 600 pgdata/base/1/1259",
    ]
    assert named_volume.read_text("pgdata/postmaster.pid") == "started\n"

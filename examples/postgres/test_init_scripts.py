"""(1) Init SQL seeded into a volume mounted at /docker-entrypoint-initdb.d."""

from __future__ import annotations

from pytest_dockervol import ContainerRunner, NamedVolume, VolumeFactory

from .conftest import PGDATA, start_postgres


def test_init_scripts_run_on_an_empty_data_directory(
    named_volume: NamedVolume,
    init_scripts: NamedVolume,
    run_container: ContainerRunner,
    pg_image: str,
) -> None:
    assert init_scripts.files() == ["00-small-wal.sql", "01-schema.sql", "02-seed.sql"]
    db = start_postgres(run_container, pg_image, named_volume, init=init_scripts)
    assert db.sql("SELECT count(*) FROM customers") == "10000"
    assert db.sql("SELECT name FROM customers WHERE country = 'FR' ORDER BY id") == "alice\ncarol"
    assert db.sql("SELECT item FROM orders ORDER BY id") == "book\npen"
    # The volume root is the data directory: owned by postgres (uid 999), mode 0700.
    code, out = db.container.exec_run(["stat", "-c", "%u:%g %a", PGDATA])
    assert isinstance(out, bytes)
    assert (code, out.decode().strip()) == (0, "999:999 700")
    assert "PG_VERSION" in named_volume.files()


def test_init_scripts_from_a_mapping(
    named_volume: NamedVolume,
    volume_factory: VolumeFactory,
    run_container: ContainerRunner,
    pg_image: str,
) -> None:
    """Init scripts can also be written by the test itself."""
    init = volume_factory.named(
        seed={
            "01-flags.sql": "CREATE TABLE flags (name text PRIMARY KEY);\n"
            "INSERT INTO flags VALUES ('beta');\n"
        }
    )
    db = start_postgres(run_container, pg_image, named_volume, init=init)
    assert db.sql("SELECT name FROM flags") == "beta"
    init.remove()

"""(2) Data persists across container restarts, and into a new container, in a named volume."""

from __future__ import annotations

from pytest_dockervol import ContainerRunner, NamedVolume

from .conftest import start_postgres


def test_rows_survive_restart_and_a_new_container(
    named_volume: NamedVolume,
    init_scripts: NamedVolume,
    run_container: ContainerRunner,
    pg_image: str,
) -> None:
    db = start_postgres(run_container, pg_image, named_volume, init=init_scripts)
    db.sql("INSERT INTO orders (customer_id, item) VALUES (3, 'lamp')")

    db.restart()  # the same container: a clean shutdown, then a start on the same volume
    assert db.sql("SELECT item FROM orders ORDER BY id") == "book\npen\nlamp"

    db.container.remove(force=True)  # a new container on the volume: no initdb this time,
    again = start_postgres(run_container, pg_image, named_volume, init=init_scripts)
    assert again.sql("SELECT item FROM orders ORDER BY id") == "book\npen\nlamp"
    assert again.sql("SELECT count(*) FROM customers") == "10000"  # seed not run twice

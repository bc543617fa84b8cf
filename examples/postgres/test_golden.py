"""(3) A cached golden data directory, a copy-on-write clone for each test; snapshot, restore.

Run with ``-n 2``: every test still writes to and sees only its own copy.
"""

from __future__ import annotations

import pytest

from pytest_dockervol import CachedVolume, ContainerRunner, VolumeFactory

from .conftest import Postgres, start_postgres, wait_until_ready

SEEDED_ORDERS = 2


@pytest.mark.parametrize("customer", [1, 2, 3, 4, 5, 6])
def test_each_test_writes_to_its_own_clone(database: Postgres, customer: int) -> None:
    database.sql(f"INSERT INTO orders (customer_id, item) VALUES ({customer}, 'order-{customer}')")
    database.sql(f"UPDATE customers SET name = 'changed-by-{customer}' WHERE id = 1")
    database.sql("DELETE FROM customers WHERE id = 10000")
    # Exactly the seed plus this test's own changes, whatever ran before or alongside.
    assert database.sql("SELECT count(*) FROM orders") == str(SEEDED_ORDERS + 1)
    assert database.sql("SELECT item FROM orders WHERE id > 2") == f"order-{customer}"
    assert database.sql("SELECT name FROM customers WHERE id = 1") == f"changed-by-{customer}"
    assert database.sql("SELECT count(*) FROM customers") == "9999"


def test_the_golden_volume_is_untouched(
    golden: CachedVolume,
    volume_factory: VolumeFactory,
    run_container: ContainerRunner,
    pg_image: str,
) -> None:
    check = start_postgres(run_container, pg_image, volume_factory.clone_of(golden))
    assert check.sql("SELECT count(*) FROM orders") == str(SEEDED_ORDERS)
    assert check.sql("SELECT name FROM customers WHERE id = 1") == "alice"


def test_snapshot_and_restore_between_phases(
    database: Postgres, run_container: ContainerRunner, pg_image: str
) -> None:
    database.sql("INSERT INTO orders (customer_id, item) VALUES (1, 'phase-1')")
    database.container.stop(timeout=30)  # a consistent copy needs a stopped server
    before_phase_2 = database.data.snapshot()
    database.container.start()
    wait_until_ready(database.container)
    database.sql("TRUNCATE orders")
    assert database.sql("SELECT count(*) FROM orders") == "0"

    database.container.remove(force=True)  # restore refuses while a container holds the volume
    database.data.restore(before_phase_2)
    restored = start_postgres(run_container, pg_image, database.data)
    assert restored.sql("SELECT item FROM orders ORDER BY id") == "book\npen\nphase-1"

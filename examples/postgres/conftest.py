"""A real PostgreSQL server on pytest-dockervol volumes.

The image comes from ``DOCKERVOL_POSTGRES_IMAGE`` (default ``postgres:15``, the official
image, for machines with a registry: ``docker pull postgres:15`` first, the plugin never
pulls). Without a registry, build a compatible one offline and point the variable at it::

    bash .ci/build-postgres-image.sh
    export DOCKERVOL_POSTGRES_IMAGE=pytest-dockervol-test/postgres:15

Both images follow the same conventions: the data directory is ``PGDATA`` =
``/var/lib/postgresql/data``; the server runs as ``postgres``, uid/gid 999; an empty
data directory is initialised (``initdb``) on first start, then ``*.sql`` files in
``/docker-entrypoint-initdb.d`` are run in name order; ``POSTGRES_PASSWORD`` is required
for that first start; connections over the Unix socket inside the container are trusted.

The tests talk to the server with ``docker exec`` (``psql`` and ``pg_isready`` inside the
container), so the containers run with ``network_mode="none"``: nothing is published.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import pytest
from docker.models.containers import Container

from pytest_dockervol import (
    CachedVolume,
    ContainerRunner,
    DockerVolume,
    NamedVolume,
    Volume,
    VolumeFactory,
)

DEFAULT_IMAGE = "postgres:15"
PGDATA = "/var/lib/postgresql/data"
INITDB_DIR = "/docker-entrypoint-initdb.d"
INIT_SCRIPTS = Path(__file__).parent / "initdb"
ENVIRONMENT = {
    "POSTGRES_PASSWORD": "only-for-tests",
    "POSTGRES_DB": "app",
    # 1 MiB WAL segments instead of 16: a fresh data directory is ~15 MB smaller,
    # so each clone of it is that much quicker to copy.
    "POSTGRES_INITDB_ARGS": "--wal-segsize=1",
}
READY_TIMEOUT = 60.0


@dataclass
class Postgres:
    """A running server and the volume that holds its data directory."""

    container: Container
    data: DockerVolume

    def sql(self, query: str, database: str = "app") -> str:
        """Run SQL with psql inside the container; return its unaligned output."""
        command = ["psql", "-U", "postgres", "-d", database, "-AtX", "-v", "ON_ERROR_STOP=1"]
        code, output = self.container.exec_run([*command, "-c", query])
        assert isinstance(output, bytes)
        text = output.decode()
        assert code == 0, f"psql failed ({code}): {text}"
        return text.strip()

    def restart(self) -> None:
        self.container.restart(timeout=30)
        wait_until_ready(self.container)


def wait_until_ready(container: Container, timeout: float = READY_TIMEOUT) -> None:
    """Poll ``pg_isready`` through docker exec until the server accepts connections.

    It asks over TCP on 127.0.0.1 on purpose: while the entrypoint runs the init scripts,
    a temporary server listens on the Unix socket only, and ``pg_isready`` over the socket
    would answer "ready" before that server is stopped and the real one started.
    """
    __tracebackhide__ = True
    deadline = time.monotonic() + timeout
    while True:
        try:
            code, _ = container.exec_run(["pg_isready", "-q", "-h", "127.0.0.1", "-U", "postgres"])
        except docker.errors.APIError:  # not running (yet, or any more)
            code = -1
        if code == 0:
            return
        container.reload()
        if container.status in ("exited", "dead"):
            log = container.logs(tail=20).decode(errors="replace")
            pytest.fail(f"postgres exited before it was ready; last log lines:\n{log}")
        if time.monotonic() > deadline:
            log = container.logs(tail=20).decode(errors="replace")
            pytest.fail(f"postgres not ready after {timeout:.0f}s; last log lines:\n{log}")
        time.sleep(0.1)


def start_postgres(
    run: ContainerRunner | VolumeFactory,
    image: str,
    data: DockerVolume,
    init: NamedVolume | None = None,
    command: list[str] | None = None,
) -> Postgres:
    """Start a server on ``data`` (mounted at PGDATA), with ``init`` scripts if given."""
    mounts = [data.mount(PGDATA)]
    if init is not None:
        mounts.append(init.mount(INITDB_DIR, read_only=True))
    runner = run.run_container if isinstance(run, VolumeFactory) else run
    container = runner(image, command, environment=ENVIRONMENT, mounts=mounts, network_mode="none")
    wait_until_ready(container)
    return Postgres(container, data)


@pytest.fixture(scope="session")
def pg_image(dockervol_client: docker.DockerClient) -> str:
    """The PostgreSQL image, which must already be on the engine (nothing is pulled)."""
    image = os.environ.get("DOCKERVOL_POSTGRES_IMAGE", DEFAULT_IMAGE)
    try:
        dockervol_client.images.get(image)
        return image
    except docker.errors.ImageNotFound:
        pass
    hint = (
        "build one offline with `bash .ci/build-postgres-image.sh` and export "
        "DOCKERVOL_POSTGRES_IMAGE=pytest-dockervol-test/postgres:15, or `docker pull "
        f"{DEFAULT_IMAGE}`"
    )
    if "DOCKERVOL_POSTGRES_IMAGE" in os.environ:
        pytest.fail(f"DOCKERVOL_POSTGRES_IMAGE={image} is not on the engine: {hint}", pytrace=False)
    pytest.skip(f"PostgreSQL image {image} is not on the engine: {hint}")


@pytest.fixture(scope="session")
def init_scripts(volume_factory: VolumeFactory) -> NamedVolume:
    """The SQL of ./initdb seeded into a volume, for /docker-entrypoint-initdb.d."""
    return volume_factory.named(seed=INIT_SCRIPTS)


def build_golden(factory: VolumeFactory, image: str, init: NamedVolume) -> Callable[[Volume], None]:
    """The cached golden's seed: start a server on the empty volume (initdb and the init
    scripts run), then stop it cleanly, so that its clones need no crash recovery."""

    def seed(data: Volume) -> None:
        assert isinstance(data, DockerVolume)
        server = start_postgres(factory, image, data, init=init)
        server.container.stop(timeout=30)
        server.container.remove()

    return seed


@pytest.fixture(scope="session")
def golden(
    volume_factory: VolumeFactory,
    dockervol_client: docker.DockerClient,
    pg_image: str,
    init_scripts: NamedVolume,
) -> CachedVolume:
    """A data directory initialised once, for this run and the later ones: initdb, schema and
    seed rows. Rebuilt when the init scripts or the image change (``inputs``, ``version``);
    built once per run however many xdist workers ask. Immutable: tests clone it."""
    return volume_factory.cached(
        "postgres-golden",
        seed=build_golden(volume_factory, pg_image, init_scripts),
        inputs=[INIT_SCRIPTS],
        version=f"{dockervol_client.images.get(pg_image).id} {ENVIRONMENT}",
    )


@pytest.fixture
def database(
    golden: CachedVolume,
    volume_factory: VolumeFactory,
    run_container: ContainerRunner,
    pg_image: str,
) -> Iterator[Postgres]:
    """A server of its own for each test, on a clone of the golden data directory:
    copy-on-write where the engine allows it (milliseconds whatever its size)."""
    data = golden.clone()  # or: volume_factory.clone_of(golden)
    yield start_postgres(run_container, pg_image, data)
    volume_factory.finalize(data)  # removes the server first, then the clone

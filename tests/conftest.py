"""Shared helpers: run inner pytest sessions against the real engine and check what they left."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import pytest
from inner_helpers import IMAGE
from inner_helpers import is_podman as is_podman  # for the outer tests too: one copy
from loopback import LoopbackProxy, engine_socket
from sshengine import SshEngine, start_ssh_engine

from pytest_dockervol._engine.engine import container_name
from pytest_dockervol._engine.labels import LABEL_RUN

#: What every inner pytest run gets (PYTEST_ADDOPTS: pytester, like this module, drops the
#: outer run's). Inner runs (hundreds per pass, three processes each under -n 2) need
#: neither hypothesis's plugin nor pytest-benchmark's, which cost ~1 s of CPU per process.
#: DOCKERVOL_INNER_ADDOPTS adds to it: CI's floors and newest passes make deprecation
#: warnings errors there.
INNER_ADDOPTS = (
    f"-p no:hypothesispytest -p no:benchmark {os.environ.get('DOCKERVOL_INNER_ADDOPTS', '')}"
)
# The outer run has read its own PYTEST_ADDOPTS already: only its subprocesses see this.
os.environ["PYTEST_ADDOPTS"] = INNER_ADDOPTS.strip()
_RUN_ID = re.compile(r"dockervol: run ([0-9a-f]{32})")
#: Every inner run's id, checked for leftovers by test_zz_nothing_left.py at the very end.
INNER_RUN_IDS: list[str] = []


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """The engine our tests check from the outside. Missing engine: fail, never skip."""
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.fail(f"these tests need a running Docker engine: {exc}", pytrace=False)
    yield client
    client.close()


@pytest.fixture(scope="session")
def image(docker_client: docker.DockerClient) -> str:
    """A runnable busybox image built locally (.ci/build-images.sh); nothing is pulled."""
    try:
        docker_client.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"test image {IMAGE} missing: run `bash .ci/build-images.sh`", pytrace=False)
    return IMAGE


#: Every inner module's shared helpers (``import inner_helpers``): see that file.
INNER_HELPERS = Path(__file__).with_name("inner_helpers.py")


def copy_inner_helpers(directory: Path) -> None:
    """Put ``inner_helpers.py`` beside the inner modules an inner run will collect."""
    (directory / INNER_HELPERS.name).write_text(INNER_HELPERS.read_text())


def leftovers(client: docker.DockerClient, run_id: str) -> list[str]:
    """Volumes and containers still labelled with an inner run's id."""
    label: dict[str, str | list[str] | bool] = {"label": f"{LABEL_RUN}={run_id}"}
    found = [f"volume {v.name}" for v in client.volumes.list(filters=label)]
    # The low-level list: containers.list() inspects each one, which fails for a container
    # removed meanwhile (Podman answers 500, not 404, while the watchdog reaps).
    found += [
        f"container {container_name(c)}" for c in client.api.containers(all=True, filters=label)
    ]
    return found


@dataclass
class InnerRun:
    result: pytest.RunResult
    run_id: str
    outer: InnerPytest

    def leftovers(self) -> list[str]:
        return leftovers(self.outer.client, self.run_id)


@dataclass
class InnerPytest:
    """A pytester bound to the engine: runs a subprocess pytest and records its run id."""

    pytester: pytest.Pytester
    client: docker.DockerClient
    image: str

    def run(self, *args: str) -> InnerRun:
        result = self.pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)
        match = _RUN_ID.search(result.stdout.str())
        assert match, "the inner run printed no dockervol header:\n" + result.stdout.str()
        INNER_RUN_IDS.append(match.group(1))
        return InnerRun(result, match.group(1), self)


@pytest.fixture
def pytester(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """pytest's own, with INNER_ADDOPTS for its runs (it unsets PYTEST_ADDOPTS)."""
    monkeypatch.setenv("PYTEST_ADDOPTS", INNER_ADDOPTS.strip())
    return pytester


@pytest.fixture
def inner(
    pytester: pytest.Pytester,
    docker_client: docker.DockerClient,
    image: str,
    monkeypatch: pytest.MonkeyPatch,
) -> InnerPytest:
    monkeypatch.setenv("DOCKERVOL_IMAGE", image)
    copy_inner_helpers(pytester.path)
    return InnerPytest(pytester, docker_client, image)


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll until ``predicate`` holds; how long it took, or an AssertionError naming ``what``."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)
    return time.monotonic() - start


def read_run_id(log: Path) -> str:
    """The run id from the header of an inner run that writes its output to ``log``."""
    wait_for(lambda: "dockervol: run " in log.read_text(), 60, "the inner run's header")
    return log.read_text().split("dockervol: run ", 1)[1][:32]


@dataclass
class KillableRun:
    """An xdist run in its own process group, whose workers each touch ``ready/<worker>``
    once they hold what the test wants killed under them."""

    proc: subprocess.Popen[bytes]
    run_id: str
    ready: Path

    def wait_until_ready(self, workers: int = 2) -> None:
        wait_for(lambda: len(list(self.ready.iterdir())) == workers, 120, "the workers to hold")

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


@contextlib.contextmanager
def killable_run(tmp_path: Path, source: str, image: str) -> Iterator[KillableRun]:
    """Start ``pytest -n 2 --dist each`` on ``source`` (a test module); kill -9 the whole
    process group when the block ends, however it ends."""
    ready = tmp_path / "ready"
    ready.mkdir()
    (tmp_path / "test_hold.py").write_text(source)
    copy_inner_helpers(tmp_path)
    log = tmp_path / "log.txt"
    env = {**os.environ, "DOCKERVOL_IMAGE": image, "READY_DIR": str(ready), "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-n", "2", "--dist", "each", "-p", "no:cacheprovider"],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    run = KillableRun(proc, "", ready)
    try:
        run.run_id = read_run_id(log)
        INNER_RUN_IDS.append(run.run_id)
        yield run
    finally:
        run.kill()


#: ``-m core``: what the Python 3.9 floors and 3.13 newest jobs run. Every module without
#: an engine (pure logic), and the engine tests that prove each capability once: fixtures,
#: seeding, xdist, clones, crashes and keeping, the engine differences, bad input.
CORE_ENGINE_MODULES = frozenset(
    {
        "test_fixtures.py",
        "test_factory.py",
        "test_parallel.py",
        "test_cow.py",
        "test_crash.py",
        "test_kept_and_interrupted.py",
        "test_engine_versions.py",
        "test_engines.py",
        "test_bad_input.py",
        "test_zz_nothing_left.py",
    }
)
PURE_MODULES = frozenset(
    {
        "test_architecture.py",
        "test_cow_logic.py",
        "test_endpoint_logic.py",
        "test_heartbeat_logic.py",
        "test_hostile_seeds.py",
        "test_packaging.py",
        "test_reaper_logic.py",
        "test_seedplan.py",
        "test_seeds.py",
        "test_tarstream.py",
    }
)


#: DOCKERVOL_STRICT_WARNINGS=1 (CI's floors and newest passes): warnings are errors, but
#: for these, each the SDK's and not ours to close: docker-py's unix-socket connection
#: leaks its socket when connect() fails (UnixHTTPConnection.connect), and the tests point
#: clients at sockets nothing listens on, on purpose.
STRICT_WARNINGS = (
    "error",
    r"ignore:Exception ignored in. <socket\.socket fd=-?\d+, family=(1|AddressFamily\.AF_UNIX),"
    ":pytest.PytestUnraisableExceptionWarning",
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "core: unit tests and the core engine tests (the floors and newest jobs)"
    )
    if os.environ.get("DOCKERVOL_STRICT_WARNINGS") == "1":
        for line in STRICT_WARNINGS:  # later lines win: the ignores come after "error"
            config.addinivalue_line("filterwarnings", line)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the core; the leftover check over all inner runs goes last."""
    for item in items:
        if item.path.name in CORE_ENGINE_MODULES | PURE_MODULES:
            item.add_marker(pytest.mark.core)
    items.sort(key=lambda item: item.path.name == "test_zz_nothing_left.py")


def remove_run(client: docker.DockerClient, run_id: str) -> None:
    """Teardown: remove what is labelled with ``run_id``, containers first, then copy-on-write
    volumes before what they read (by their ``needs`` labels); by label only."""
    label: dict[str, str | list[str] | bool] = {"label": f"{LABEL_RUN}={run_id}"}
    for container in client.api.containers(all=True, filters=label):
        with contextlib.suppress(docker.errors.NotFound):
            client.api.remove_container(container["Id"], force=True, v=True)
    volumes = client.volumes.list(filters=label)
    volumes.sort(
        key=lambda v: -sum(k.startswith("pytest-dockervol.needs.") for k in v.attrs["Labels"])
    )
    for volume in volumes:
        with contextlib.suppress(docker.errors.NotFound):
            volume.remove()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``pytest-dockervol ARGS`` as a user runs it, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "pytest_dockervol", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def tcp_proxy() -> Iterator[LoopbackProxy]:
    """A TCP address on loopback for the outer engine (which must be a local unix socket)."""
    proxy = LoopbackProxy(engine_socket())
    yield proxy
    proxy.stop()


@pytest.fixture(scope="session")
def ssh_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshEngine]:
    """An ssh:// address for the outer engine: sshd on loopback (``sshengine.py``)."""
    engine = start_ssh_engine(tmp_path_factory.mktemp("ssh-engine"))
    yield engine
    engine.stop()

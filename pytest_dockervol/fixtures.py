"""The fixtures: a session factory and thin function-scoped volumes, like tmp_path."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
import requests.exceptions
from docker.models.containers import Container

from ._containers import TrackedContainer, start_container
from ._engine import describe_address, short_reason
from ._errors import DockervolError
from ._factory import VolumeFactory
from ._state import factory_key
from ._volumes import AnonymousVolume, HostVolume, NamedVolume


@contextlib.contextmanager
def _one_line_errors() -> Iterator[None]:
    """Setup failures (no engine, engine refusal) are one line, not a traceback wall."""
    __tracebackhide__ = True
    try:
        yield
    except DockervolError as exc:
        raise pytest.fail.Exception(str(exc), pytrace=False) from None
    except docker.errors.APIError as exc:
        message = f"the Docker engine refused: {exc.explanation or exc}"
        raise pytest.fail.Exception(message, pytrace=False) from None
    except requests.exceptions.RequestException as exc:
        message = (
            f"the Docker engine at {describe_address()} did not answer ({short_reason(exc)}); "
            "check that it is running, or raise --dockervol-timeout if it is just slow"
        )
        raise pytest.fail.Exception(message, pytrace=False) from None


@pytest.fixture(scope="session")
def volume_factory(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> VolumeFactory:
    """Session factory: ``.named()``, ``.anonymous()``, ``.host()``, ``.run_container()``."""
    factory = request.config.stash[factory_key]
    factory.bind_tmp_path_factory(tmp_path_factory)
    return factory


@pytest.fixture(scope="session")
def dockervol_client(volume_factory: VolumeFactory) -> docker.DockerClient:
    """The Docker SDK client the plugin uses (from the environment, like the docker CLI)."""
    with _one_line_errors():
        return volume_factory.client


@pytest.fixture
def named_volume(
    volume_factory: VolumeFactory, request: pytest.FixtureRequest
) -> Iterator[NamedVolume]:
    """A fresh, empty, uniquely named Docker volume, removed at the end of the test."""
    with _one_line_errors(), volume_factory.creating_for(request.node.nodeid):
        volume = volume_factory.named()
    yield volume
    volume_factory.finalize(volume)


@pytest.fixture
def anonymous_volume(
    volume_factory: VolumeFactory, request: pytest.FixtureRequest
) -> Iterator[AnonymousVolume]:
    """A fresh, empty anonymous Docker volume, removed at the end of the test."""
    with _one_line_errors(), volume_factory.creating_for(request.node.nodeid):
        volume = volume_factory.anonymous()
    yield volume
    volume_factory.finalize(volume)


@pytest.fixture
def host_volume(volume_factory: VolumeFactory, tmp_path: Path) -> Iterator[HostVolume]:
    """A fresh, empty host directory under the test's tmp_path, bind-mounted by ``.mount()``."""
    with _one_line_errors():
        volume = volume_factory._host_in(tmp_path / "host_volume")
    yield volume
    volume_factory.finalize(volume)


class ContainerRunner:
    """Starts labelled containers for one test; removes them and their anonymous volumes after."""

    def __init__(self, factory: VolumeFactory, creator: str) -> None:
        self._factory = factory
        self._creator = creator
        self.containers: list[TrackedContainer] = []

    def __call__(
        self, image: str, command: str | list[str] | None = None, **kwargs: Any
    ) -> Container:
        """Create and start a container; takes the keyword arguments of
        ``client.containers.create``. Nothing is pulled."""
        __tracebackhide__ = True
        factory = self._factory
        return start_container(
            factory.creating_engine,
            factory.identity,
            self._creator,
            self._register,
            image,
            command,
            **kwargs,
        )

    def _register(self, tracked: TrackedContainer) -> None:
        self.containers.append(tracked)
        self._factory._register(tracked)  # the session's cleanup catches what teardown missed

    def remove_all(self) -> None:
        for tracked in reversed(self.containers):
            self._factory.finalize(tracked)


@pytest.fixture
def run_container(
    volume_factory: VolumeFactory, request: pytest.FixtureRequest
) -> Iterator[ContainerRunner]:
    """``run_container(image, command, mounts=[vol.mount("/data")])``: started, removed after."""
    runner = ContainerRunner(volume_factory, request.node.nodeid)
    yield runner
    runner.remove_all()

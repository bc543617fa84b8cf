"""The fixtures: a session factory and thin function-scoped volumes, like tmp_path."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from ._engine.engine import (
    DockerClient,
    EngineAPIError,
    EngineRequestError,
    describe_address,
    engine_error_reason,
    short_reason,
)
from ._errors import DockervolError
from ._factory import VolumeFactory
from ._state import factory_key
from ._volumes.anonymous import AnonymousVolume
from ._volumes.base import Volume
from ._volumes.containers import ContainerRunner
from ._volumes.docker import NamedVolume
from ._volumes.host import HostVolume

V = TypeVar("V", bound=Volume)


@contextlib.contextmanager
def _one_line_errors() -> Iterator[None]:
    """Setup failures (no engine, engine refusal) are one line, not a traceback wall."""
    __tracebackhide__ = True
    try:
        yield
    except DockervolError as exc:
        raise pytest.fail.Exception(str(exc), pytrace=False) from None
    except EngineAPIError as exc:
        message = f"the Docker engine refused: {engine_error_reason(exc)}"
        raise pytest.fail.Exception(message, pytrace=False) from None
    except EngineRequestError as exc:
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
def dockervol_client(volume_factory: VolumeFactory) -> DockerClient:
    """The Docker SDK client the plugin uses (from the environment, like the docker CLI)."""
    with _one_line_errors():
        return volume_factory.client


def _for_one_test(
    factory: VolumeFactory, request: pytest.FixtureRequest, make: Callable[[], V]
) -> Iterator[V]:
    """The body of a function-scoped volume fixture: made for the test, removed after it."""
    with _one_line_errors(), factory.creating_for(request.node.nodeid):
        volume = make()
    yield volume
    factory.finalize(volume)


@pytest.fixture
def named_volume(
    volume_factory: VolumeFactory, request: pytest.FixtureRequest
) -> Iterator[NamedVolume]:
    """A fresh, empty, uniquely named Docker volume, removed at the end of the test."""
    yield from _for_one_test(volume_factory, request, volume_factory.named)


@pytest.fixture
def anonymous_volume(
    volume_factory: VolumeFactory, request: pytest.FixtureRequest
) -> Iterator[AnonymousVolume]:
    """A fresh, empty anonymous Docker volume, removed at the end of the test."""
    yield from _for_one_test(volume_factory, request, volume_factory.anonymous)


@pytest.fixture
def host_volume(
    volume_factory: VolumeFactory, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[HostVolume]:
    """A fresh, empty host directory under the test's tmp_path, bind-mounted by ``.mount()``."""
    directory = tmp_path / "host_volume"
    yield from _for_one_test(volume_factory, request, lambda: volume_factory.host_at(directory))


@pytest.fixture
def run_container(
    volume_factory: VolumeFactory, request: pytest.FixtureRequest
) -> Iterator[ContainerRunner]:
    """``run_container(image, command, mounts=[vol.mount("/data")])``: started, removed after."""
    runner = ContainerRunner(volume_factory, request.node.nodeid, _ispytest=True)
    yield runner
    runner.remove_all()

"""The session-wide volume factory, in the spirit of pytest's ``tmp_path_factory``."""

from __future__ import annotations

import contextlib
import logging
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, final

import docker.errors
import pytest
import requests.exceptions
from docker.models.containers import Container

from ._archive import build_seed_plan
from ._containers import start_container
from ._engine import Engine, engine_error_reason
from ._errors import CleanupError, DockervolError, HostPathError, RemoteEngineError
from ._identity import LABEL_NONCE, RunIdentity, check_user_labels, check_volume_name
from ._reaper import reap_dead_runs
from ._shared import SharedVolume, shared_volume
from ._volumes import (
    AnonymousVolume,
    HostVolume,
    NamedVolume,
    PreparedSeed,
    SeedSource,
    Volume,
    seed_prepared,
)

if TYPE_CHECKING:
    from ._options import Settings
    from ._snapshot import Snapshot
    from ._volumes import DockerVolume

log = logging.getLogger("pytest_dockervol")
V = TypeVar("V", bound=Volume)
NV = TypeVar("NV", bound=NamedVolume)

#: Errors a teardown turns into a report instead of a crash of the session.
CLEANUP_ERRORS = (
    DockervolError,
    docker.errors.DockerException,
    requests.exceptions.RequestException,
)


class DockervolCleanupWarning(pytest.PytestWarning):
    """Something pytest-dockervol created could not be removed (the message says why)."""


class _Removable(Protocol):
    name: str
    kind: str

    def remove(self) -> None: ...


@final
class VolumeFactory:
    """Creates volumes and containers for tests; removes them at the latest when the session ends.

    Use it from fixtures of any scope; what it creates lives until ``.remove()`` or
    the end of the session.
    """

    def __init__(
        self, settings: Settings, identity: RunIdentity, *, _ispytest: bool = False
    ) -> None:
        self.settings = settings
        #: xdist controller: a worker touched the engine (so the final sweep is worth it).
        self.workers_used_engine = False
        #: What this run reaped of others (and, on the xdist controller, of its workers).
        self.reaped_lines: list[str] = []
        self.identity = identity
        self._engine: Engine | None = None
        self._engine_error: DockervolError | None = None
        self._stack = contextlib.ExitStack()
        self._serial = 0
        self._tmp_path_factory: pytest.TempPathFactory | None = None
        #: Name of the test running now, for labels and generated names.
        self.current_creator = "session"
        self.kept: list[str] = []
        self.problems: list[str] = []
        #: Set by the plugin: starts the watchdog before the run creates its first resource.
        self.on_first_create: Callable[[], None] | None = None

    @classmethod
    def from_config(cls, config: pytest.Config, settings: Settings) -> VolumeFactory:
        workerinput = getattr(config, "workerinput", None)
        if workerinput is not None:
            identity = RunIdentity.from_workerinput(workerinput, settings.name_prefix)
        else:
            identity = RunIdentity.new(settings.name_prefix)
        return cls(settings, identity, _ispytest=True)

    # -- engine -------------------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        """The Docker engine, connected on first use; a failure is remembered (fail fast)."""
        __tracebackhide__ = True
        if self._engine is None:
            if self._engine_error is not None:
                raise self._engine_error
            try:
                self._engine = Engine.connect(self.settings.api_timeout)
            except DockervolError as exc:
                self._engine_error = exc
                raise
            self._stack.callback(self._engine.close)
            self._after_connect(self._engine)
        return self._engine

    def _after_connect(self, engine: Engine) -> None:
        """Once per process, before creating anything: reap runs that died."""
        if not self.settings.direct:
            engine.direct_verified = False
        try:
            reaped = reap_dead_runs(
                engine.api, self.identity, max_age=self.settings.reap_after_hours * 3600
            )
        except CLEANUP_ERRORS as exc:
            log.warning("pytest-dockervol: could not reap earlier runs: %s", exc)
            return
        self.reaped_lines += [
            f"run {run_id}: removed {len(result.removed)} resource(s) it left behind"
            for run_id, result in reaped.items()
            if result.removed
        ]

    @property
    def connected(self) -> bool:
        return self._engine is not None

    @property
    def client(self) -> docker.DockerClient:
        return self.engine.client

    # -- volumes ------------------------------------------------------------------------

    def named(
        self,
        name: str | None = None,
        *,
        labels: dict[str, str] | None = None,
        driver: str | None = None,
        driver_opts: dict[str, str] | None = None,
        seed: SeedSource | None = None,
    ) -> NamedVolume:
        """A new named volume; ``name`` must not exist yet (a generated one never does)."""
        __tracebackhide__ = True
        if name is not None:
            check_volume_name(name)
        user_labels = check_user_labels(labels)
        prepared = self._prevalidate(seed)
        volume = self._create_named_volume(
            name or self._next_name(),
            kind="named",
            labels=user_labels,
            driver=driver,
            driver_opts=driver_opts,
            volume_cls=NamedVolume,
        )
        return self._adopt(volume, prepared)

    def _create_named_volume(
        self,
        name: str,
        *,
        kind: str,
        labels: dict[str, str],
        volume_cls: type[NV],
        driver: str | None = None,
        driver_opts: dict[str, str] | None = None,
    ) -> NV:
        """Create (not register) a named volume labelled as this run's."""
        engine = self.creating_engine
        nonce = uuid.uuid4().hex
        all_labels = {
            **labels,
            **self.identity.labels(kind, self.current_creator),
            LABEL_NONCE: nonce,
        }
        volume = volume_cls.create(
            engine,
            self.identity,
            name=name,
            creator=self.current_creator,
            labels=all_labels,
            nonce=nonce,
            driver=driver,
            driver_opts=driver_opts,
        )
        volume._factory = self
        return volume

    def shared(self, key: str, *, seed: SeedSource | None = None) -> SharedVolume:
        """The run's volume for ``key``: created and seeded exactly once per test run however
        many xdist workers ask, never seen half-seeded, removed when the whole run ends."""
        __tracebackhide__ = True
        return shared_volume(self, key, seed)

    def clone_of(
        self,
        source: DockerVolume | Snapshot,
        *,
        name: str | None = None,
        labels: dict[str, str] | None = None,
        allow_running: bool = False,
    ) -> NamedVolume:
        """A new volume with the files of ``source`` (a volume or a snapshot), removed like
        any other: ``db = volume_factory.clone_of(golden)`` gives each test its own copy."""
        __tracebackhide__ = True
        from ._snapshot import Snapshot, clone_volume

        if isinstance(source, Snapshot):
            source._check_alive()
            source = source.storage
        return clone_volume(
            source, name=name, labels=labels, allow_running=allow_running, factory=self
        )

    def anonymous(
        self,
        *,
        labels: dict[str, str] | None = None,
        driver: str | None = None,
        driver_opts: dict[str, str] | None = None,
        seed: SeedSource | None = None,
    ) -> AnonymousVolume:
        """A new anonymous volume (Docker picks its 64-hex name)."""
        __tracebackhide__ = True
        user_labels = check_user_labels(labels)
        prepared = self._prevalidate(seed)
        volume = AnonymousVolume.create(
            self.creating_engine,
            self.identity,
            creator=self.current_creator,
            labels={**user_labels, **self.identity.labels("anonymous", self.current_creator)},
            driver=driver,
            driver_opts=driver_opts,
        )
        volume._factory = self
        return self._adopt(volume, prepared)

    def host(self, path: str | Path | None = None, *, seed: SeedSource | None = None) -> HostVolume:
        """A host directory to bind: a fresh one under the session's temporary directory, or
        ``path``, an existing directory that cleanup never modifies or deletes."""
        __tracebackhide__ = True
        prepared = self._prevalidate(seed)
        self._check_host_volumes_possible()
        if path is not None:
            existing = Path(path)
            if not existing.exists():
                raise HostPathError(str(existing), "does not exist")
            if not existing.is_dir():
                raise HostPathError(str(existing), "is not a directory")
            return self._adopt(HostVolume(existing.resolve(), owned=False), prepared)
        if self._tmp_path_factory is None:
            raise RuntimeError("volume_factory.host() needs the volume_factory fixture")
        directory = self._tmp_path_factory.mktemp("dockervol-host", numbered=True)
        return self._adopt(self._host_volume(directory), prepared)

    def _check_host_volumes_possible(self) -> None:
        """Refuse host volumes on a remote engine; without any engine they are plain dirs."""
        __tracebackhide__ = True
        try:
            engine = self.engine
        except DockervolError:
            return
        if not engine.shares_host_filesystem:
            raise RemoteEngineError(engine.address, engine.engine_host)

    def _host_volume(self, directory: Path) -> HostVolume:
        return HostVolume(
            directory, owned=True, identity=self.identity, engine_if_connected=lambda: self._engine
        )

    def _host_in(self, directory: Path) -> HostVolume:
        """A fresh host volume in a directory made for it (the ``host_volume`` fixture)."""
        self._check_host_volumes_possible()
        directory.mkdir()
        return self._adopt(self._host_volume(directory), None)

    # -- containers ---------------------------------------------------------------------

    def run_container(
        self, image: str, command: str | list[str] | None = None, **kwargs: Any
    ) -> Container:
        """Start a container removed (with its anonymous volumes) when the session ends."""
        __tracebackhide__ = True
        return start_container(
            self.creating_engine,
            self.identity,
            self.current_creator,
            self._register,
            image,
            command,
            **kwargs,
        )

    # -- lifecycle ----------------------------------------------------------------------

    def _next_name(self) -> str:
        self._serial += 1
        return self.identity.volume_name(self.current_creator.rpartition("::")[2], self._serial)

    @staticmethod
    def _prevalidate(seed: SeedSource | None) -> PreparedSeed:
        """Refuse a bad seed before anything is created (a plan has no side effects), and
        keep the plan: a directory is walked and an archive read once, not twice."""
        __tracebackhide__ = True
        if seed is None or callable(seed):
            return seed
        return build_seed_plan(seed)

    @property
    def creating_engine(self) -> Engine:
        """The engine, for a call about to create something: the watchdog guards the run
        from before its first resource exists (a kill right after a create leaks nothing)."""
        __tracebackhide__ = True
        engine = self.engine
        if self.on_first_create is not None:
            start_watchdog, self.on_first_create = self.on_first_create, None
            start_watchdog()
        return engine

    def _register(self, resource: _Removable) -> None:
        self._stack.callback(self.finalize, resource)

    def _adopt(self, volume: V, seed: PreparedSeed) -> V:
        """Register removal right after creation, before seeding: a failed seed leaks nothing."""
        __tracebackhide__ = True
        self._register(volume)
        if seed is not None:
            try:
                seed_prepared(volume, seed)
            except BaseException:
                self.finalize(volume)
                raise
        return volume

    def finalize(self, resource: _Removable) -> None:
        """Remove (or keep, with --dockervol-keep) and report what failed; never raise."""
        if getattr(resource, "removed", False):
            return
        if self.settings.keep and not (isinstance(resource, HostVolume) and not resource._owned):
            label = f"{resource.kind} {resource.name}"
            if label not in self.kept:
                self.kept.append(label)
            return
        try:
            resource.remove()
        except CLEANUP_ERRORS as exc:
            if isinstance(exc, CleanupError):
                message = f"pytest-dockervol: {exc}"
            else:
                why = engine_error_reason(exc)
                what = f"{resource.kind} volume" if isinstance(resource, Volume) else resource.kind
                message = f"pytest-dockervol: could not remove {what} {resource.name}: {why}"
            if message in self.problems:
                return  # the session's last attempt failed the same way as the test's
            log.warning("%s", message)
            self.problems.append(message)
            warnings.warn(DockervolCleanupWarning(message), stacklevel=2)

    def close(self) -> None:
        """Remove everything still alive, newest first (containers before their volumes)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DockervolCleanupWarning)
            self._stack.close()

    def bind_tmp_path_factory(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self._tmp_path_factory = tmp_path_factory

    @contextlib.contextmanager
    def creating_for(self, creator: str) -> Iterator[None]:
        previous, self.current_creator = self.current_creator, creator
        try:
            yield
        finally:
            self.current_creator = previous

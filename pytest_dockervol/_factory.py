"""The session-wide volume factory, in the spirit of pytest's ``tmp_path_factory``.

It owns everything the session creates (the ``ResourceOwner`` its volumes and containers
know it as): an ExitStack of removals, closed when the session finishes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar, final

import pytest

from ._cache.cached import CachedVolume, cached_volume
from ._cache.shared import SharedVolume, shared_volume
from ._cache.store import evict_unused
from ._engine.engine import ENGINE_ERRORS, Container, DockerClient, Engine, engine_error_reason
from ._engine.labels import RunIdentity, check_user_labels, check_volume_name
from ._errors import (
    CleanupError,
    DockervolCleanupWarning,
    DockervolError,
    DockervolUsageError,
    HostPathError,
    RemoteEngineError,
    check_ispytest,
)
from ._options import Settings
from ._runs.reaper import reap_dead_runs
from ._volumes.anonymous import AnonymousVolume
from ._volumes.base import SeedSource, Volume, adopt, prepare_seed
from ._volumes.containers import ContainerRunner
from ._volumes.cow import CopyOnWrite
from ._volumes.direct import DIRECT_WRITES
from ._volumes.docker import DockerVolume, NamedVolume, Snapshot
from ._volumes.helper import refuse_tmpfs_seed
from ._volumes.host import HostVolume
from ._volumes.owner import Removable

DockerVolumeT = TypeVar("DockerVolumeT", bound=DockerVolume)

log = logging.getLogger("pytest_dockervol")


@final
@dataclasses.dataclass(eq=False)
class VolumeFactory:
    """Creates volumes and containers for tests; removes them at the latest when the session ends.

    Use it from fixtures of any scope; what it creates lives until ``.remove()`` or
    the end of the session.
    """

    settings: Settings
    identity: RunIdentity
    #: Who is creating now (the running test's node id, or "session"): labels and names.
    creator: str
    #: What this run reaped of others (and, on the xdist controller, of its workers).
    reaped_lines: list[str]
    #: The end-of-run report: what --dockervol-keep kept (host directories here; the run's
    #: first process lists the engine's), and what could not be removed ("volume NAME" ->
    #: the message), each resource once however often its removal failed.
    kept: list[str]
    problems: dict[str, str]
    #: Set by the plugin once the run's cleanup is complete: only then may the watchdog
    #: stand down (an interrupted cleanup is the watchdog's to finish).
    cleanup_done: bool
    #: xdist controller: a worker touched the engine (so the final sweep is worth it).
    workers_used_engine: bool
    #: Set by the plugin: starts the watchdog before the run creates its first resource.
    on_first_create: Callable[[], None] | None
    _reap_on_connect: bool
    _engine: Engine | None
    _copy_on_write: CopyOnWrite | None
    _engine_error: DockervolError | None
    _stack: contextlib.ExitStack
    _serial: int
    _tmp_path_factory: pytest.TempPathFactory | None
    _session_runner: ContainerRunner

    def __init__(
        self,
        settings: Settings,
        identity: RunIdentity,
        *,
        reap_on_connect: bool = True,
        _ispytest: bool = False,
    ) -> None:
        """``reap_on_connect``: sweep runs that died when first connecting (what a test
        session does; a benchmark on a shared engine turns it off)."""
        check_ispytest(_ispytest)
        self.settings = settings
        self.identity = identity
        self.creator = "session"
        self.reaped_lines = []
        self.kept = []
        self.problems = {}
        self.cleanup_done = False
        self.workers_used_engine = False
        self.on_first_create = None
        self._reap_on_connect = reap_on_connect
        self._engine = None
        self._copy_on_write = None
        self._engine_error = None
        self._stack = contextlib.ExitStack()
        self._serial = 0
        self._tmp_path_factory = None
        self._session_runner = ContainerRunner(self, _ispytest=True)

    @classmethod
    def from_config(cls, config: pytest.Config, *, _ispytest: bool = False) -> VolumeFactory:
        """The factory of this process: an xdist worker takes the controller's run id."""
        check_ispytest(_ispytest)
        settings = Settings.from_config(config)
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
                engine = Engine.connect(self.settings.api_timeout)
            except DockervolError as exc:
                self._engine_error = exc
                raise
            self._engine = engine
            self._stack.callback(engine.close)
            if not self.settings.direct:
                engine.verdict(DIRECT_WRITES, lambda: False)  # --dockervol-direct=never: no probe
            if self._reap_on_connect:
                self._sweep_leftovers(engine)
        return self._engine

    def _sweep_leftovers(self, engine: Engine) -> None:
        """Once per process, before creating anything: reap runs that died, and (in the
        run's first process) golden-cache entries unused for too long."""
        try:
            reaped = reap_dead_runs(
                engine,
                self.identity,
                max_age=self.settings.reap_after_hours * 3600,
                heartbeat_timeout=self.settings.heartbeat_timeout,
            )
        except ENGINE_ERRORS as exc:
            log.warning("pytest-dockervol: could not reap earlier runs: %s", exc)
            return
        self.reaped_lines += [
            f"run {run_id}: removed {len(result.removed)} resource(s) it left behind "
            f"({result.reason})"
            for run_id, result in reaped.items()
            if result.removed
        ]
        if self.identity.is_worker:
            return  # the run's first process looks after the cache
        try:
            self.reaped_lines += evict_unused(engine, max_idle=self.settings.cache_days * 86400)
        except ENGINE_ERRORS as exc:
            log.warning("pytest-dockervol: could not clean the golden cache: %s", exc)

    @property
    def connected(self) -> bool:
        return self._engine is not None

    @property
    def client(self) -> DockerClient:
        return self.engine.client

    @property
    def copy_on_write(self) -> CopyOnWrite:
        """Whether this engine's clones may be copy-on-write (probed on first ask)."""
        if self._copy_on_write is None:
            self._copy_on_write = CopyOnWrite(
                self.engine,
                self.identity,
                wanted=self.settings.copy_on_write,
                creating=lambda: self.creating_engine,
            )
        return self._copy_on_write

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
        """A new named volume; ``name`` must not exist yet (a generated one never does).

        Raises:
            VolumeNameError, LabelError, DockervolUsageError: a bad name, label or option.
            SeedError: a bad seed (nothing is created), or writing it failed (nothing is
                left).
            VolumeExistsError: ``name`` exists already.
            EngineRefusedError: the engine refused the driver or its options.
        """
        __tracebackhide__ = True
        if name is not None:
            check_volume_name(name)
        return self._docker_volume(
            NamedVolume, name or self.next_name(), labels, driver, driver_opts, seed
        )

    def anonymous(
        self,
        *,
        labels: dict[str, str] | None = None,
        driver: str | None = None,
        driver_opts: dict[str, str] | None = None,
        seed: SeedSource | None = None,
    ) -> AnonymousVolume:
        """A new anonymous volume (Docker picks its 64-hex name).

        Raises:
            LabelError, DockervolUsageError: a bad label or option.
            SeedError: a bad seed (nothing is created), or writing it failed (nothing is
                left).
            EngineFeatureError: a driver, driver_opts or labels on Podman, which ignores them.
            EngineRefusedError: the engine refused the driver or its options.
        """
        __tracebackhide__ = True
        return self._docker_volume(AnonymousVolume, None, labels, driver, driver_opts, seed)

    def _docker_volume(
        self,
        volume_class: type[DockerVolumeT],
        name: str | None,
        labels: dict[str, str] | None,
        driver: str | None,
        driver_opts: dict[str, str] | None,
        seed: SeedSource | None,
    ) -> DockerVolumeT:
        """Everything is checked before the volume exists; its removal is registered
        before it is seeded."""
        __tracebackhide__ = True
        user_labels = check_user_labels(labels)
        refuse_tmpfs_seed(driver, driver_opts, seed)
        prepared = prepare_seed(seed)
        volume = volume_class.create(
            self,
            name,
            kind=volume_class.kind,
            labels=user_labels,
            driver=driver,
            driver_opts=driver_opts,
        )
        return adopt(self, volume, prepared)

    def shared(self, key: str, *, seed: SeedSource | None = None) -> SharedVolume:
        """The run's volume for ``key``: created and seeded exactly once per test run however
        many xdist workers ask, never seen half-seeded, removed when the whole run ends.

        Raises:
            DockervolUsageError: ``key`` is not a non-empty string.
            SharedSeedError: creating or seeding it failed, in this process or another of the run.
        """
        __tracebackhide__ = True
        return shared_volume(self, key, seed)

    def cached(
        self,
        key: str,
        *,
        seed: SeedSource | None = None,
        inputs: Iterable[str | os.PathLike[str]] = (),
        version: str = "",
    ) -> CachedVolume:
        """A golden volume built once and reused by later runs until ``key``, ``version``,
        the seed's content or the files under ``inputs`` change. Immutable: clone it.
        Within a run it is built once, whatever the number of xdist workers.

        Raises:
            DockervolUsageError: a bad key (empty, over 200 characters, a control character),
                version or input (not a path, or unreadable).
            SeedError: a bad seed (nothing is created).
            CacheBuildError: building it failed, in this process or another of the run.
        """
        __tracebackhide__ = True
        return cached_volume(self, key, seed, inputs, version, self.settings.cache)

    def clone_of(
        self,
        source: DockerVolume | Snapshot,
        *,
        name: str | None = None,
        labels: dict[str, str] | None = None,
        allow_running: bool = False,
    ) -> NamedVolume:
        """A new volume with the files of ``source`` (a volume or a snapshot), removed like
        any other: ``db = volume_factory.clone_of(golden)`` gives each test its own copy.

        Raises:
            DockervolUsageError: ``source`` is not a Docker volume or snapshot, or a bad name.
            LabelError: a label the plugin cannot accept.
            VolumeInUseError: a running container uses ``source`` (and not ``allow_running``).
            VolumeRemovedError: ``source`` was removed.
            VolumeCopyError: copying failed (nothing is left).
        """
        __tracebackhide__ = True
        if isinstance(source, Snapshot):
            return source.clone(name=name, labels=labels)
        if not isinstance(source, DockerVolume):
            fix = (
                "to copy a host directory, seed a named volume from it: "
                "volume_factory.named(seed=host_volume.path)"
                if isinstance(source, HostVolume)
                else "pass a volume or a snapshot made by volume_factory"
            )
            raise DockervolUsageError(
                f"clone_of() copies a Docker volume or a snapshot, not {source!r}; {fix}"
            )
        return source.clone(name=name, labels=labels, allow_running=allow_running)

    def host(self, path: str | Path | None = None, *, seed: SeedSource | None = None) -> HostVolume:
        """A host directory to bind: a fresh one under the session's temporary directory, or
        ``path``, an existing directory that cleanup never modifies or deletes.

        Raises:
            HostPathError: ``path`` does not exist or is not a directory.
            RemoteEngineError: the engine runs on another machine and cannot bind this one's paths.
            SeedError: a bad seed, or writing it failed.
        """
        __tracebackhide__ = True
        prepared = prepare_seed(seed)
        self._check_host_volumes_possible()
        if path is not None:
            existing = Path(path)
            if not existing.exists():
                raise HostPathError(str(existing), "does not exist")
            if not existing.is_dir():
                raise HostPathError(str(existing), "is not a directory")
            return adopt(self, HostVolume(existing.resolve(), owned=False), prepared)
        if self._tmp_path_factory is None:
            raise RuntimeError("volume_factory.host() needs the volume_factory fixture")
        directory = self._tmp_path_factory.mktemp("dockervol-host", numbered=True)
        return adopt(self, self._owned_host_volume(directory), prepared)

    def host_at(self, directory: str | Path) -> HostVolume:
        """A host volume in a new directory ``directory`` (it must not exist yet, its parent
        must), deleted at removal like any the plugin made: ``host_volume`` uses it.

        Raises:
            HostPathError: ``directory`` exists already, or its parent does not.
            RemoteEngineError: the engine runs on another machine and cannot bind this one's paths.
        """
        __tracebackhide__ = True
        self._check_host_volumes_possible()
        path = Path(directory)
        try:
            path.mkdir()
        except FileExistsError:
            raise HostPathError(str(path), "exists already") from None
        except FileNotFoundError:
            raise HostPathError(str(path.parent), "does not exist") from None
        return adopt(self, self._owned_host_volume(path))

    def _check_host_volumes_possible(self) -> None:
        """Refuse host volumes on a remote engine; without any engine they are plain dirs."""
        __tracebackhide__ = True
        try:
            engine = self.engine
        except DockervolError:
            return
        if not engine.shares_host_filesystem:
            raise RemoteEngineError(engine.address, engine.engine_host)

    def _owned_host_volume(self, directory: Path) -> HostVolume:
        return HostVolume(
            directory, owned=True, identity=self.identity, engine_if_connected=lambda: self._engine
        )

    # -- containers ---------------------------------------------------------------------

    def run_container(
        self, image: str, command: str | list[str] | None = None, **kwargs: Any
    ) -> Container:
        """Start a container removed (with its anonymous volumes) when the session ends.

        Raises:
            ImageNotFoundLocallyError: the image is not on the engine (the plugin never pulls).
            EngineRefusedError: the engine refused to create or start the container.
        """
        __tracebackhide__ = True
        return self._session_runner(image, command, **kwargs)

    # -- the owner of what it creates ---------------------------------------------------

    def next_name(self) -> str:
        self._serial += 1
        return self.identity.volume_name(self.creator.rpartition("::")[2], self._serial)

    def register(self, resource: Removable) -> None:
        self._stack.callback(self.finalize, resource)

    def finalize(self, resource: Removable) -> None:
        """Remove (or keep, with --dockervol-keep) and report what failed; never raise."""
        if resource.removed:
            return
        if self.settings.keep and not (isinstance(resource, HostVolume) and not resource.owned):
            # What is on the engine is listed from it when the run ends (with its kinds, and
            # without the helpers that would pin it); a host directory is known only here.
            line = f"{resource.kind:9} {resource.name}"
            if isinstance(resource, HostVolume) and line not in self.kept:
                self.kept.append(line)
            return
        try:
            resource.remove()
        except ENGINE_ERRORS as exc:
            is_volume = isinstance(resource, Volume)
            key = f"volume {resource.name}" if is_volume else f"{resource.kind} {resource.name}"
            if key in self.problems:
                return  # the session's last attempt failed again: reported once
            if isinstance(exc, CleanupError):
                message = f"pytest-dockervol: {exc}"
            else:
                why = engine_error_reason(exc)
                what = f"{resource.kind} volume" if is_volume else resource.kind
                message = f"pytest-dockervol: could not remove {what} {resource.name}: {why}"
            log.warning("%s", message)
            self.problems[key] = message
            warnings.warn(DockervolCleanupWarning(message), stacklevel=2)

    # -- lifecycle ----------------------------------------------------------------------

    def close(self) -> None:
        """Remove everything still alive, newest first (containers before their volumes)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DockervolCleanupWarning)
            self._stack.close()

    def bind_tmp_path_factory(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self._tmp_path_factory = tmp_path_factory

    @contextlib.contextmanager
    def creating_for(self, creator: str) -> Iterator[None]:
        """Label what is created inside with ``creator`` (a test's node id)."""
        previous, self.creator = self.creator, creator
        try:
            yield
        finally:
            self.creator = previous

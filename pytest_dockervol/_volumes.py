"""Volume objects: what a test holds, seeds, mounts, reads back and removes."""

from __future__ import annotations

import abc
import contextlib
import io
import os
import re
import shutil
import tarfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union

import docker.errors
from docker.types import DriverConfig, Mount

from ._archive import (
    SeedFile,
    SeedPlan,
    build_seed_plan,
    check_relative_path,
)
from ._engine import HELPER_MOUNT_POINT, Engine, refused_as
from ._errors import (
    CleanupError,
    DockervolUsageError,
    EngineRefusedError,
    VolumeExistsError,
    VolumeReadError,
    VolumeRemovedError,
)
from ._identity import (
    ANONYMOUS_VOLUME_LABEL,
    LABEL_CREATOR,
    LABEL_NONCE,
    LABEL_PREFIX,
    LABEL_RUN,
    RunIdentity,
)
from ._tarstream import iter_tar_members, list_files_in_tar, read_file_from_tar

if TYPE_CHECKING:
    from typing_extensions import Self

    from ._factory import VolumeFactory
    from ._snapshot import Snapshot

SeedMapping = Mapping[str, Union[str, bytes, SeedFile, "os.PathLike[str]"]]
#: What ``seed()`` accepts: a mapping, a host directory or archive, or a callable.
SeedSource = Union[SeedMapping, str, "os.PathLike[str]", Callable[["Volume"], object]]
#: A seed validated before anything is created: a plan, or a callable run afterwards.
PreparedSeed = Union[SeedPlan, Callable[["Volume"], object], None]


def seed_prepared(volume: Volume, prepared: PreparedSeed) -> None:
    """Seed ``volume`` from what ``VolumeFactory._prevalidate`` made of a seed source."""
    __tracebackhide__ = True
    if isinstance(prepared, SeedPlan):
        volume._check_alive()
        volume._write_plan(prepared)
    elif prepared is not None:
        volume.seed(prepared)


#: Podman takes an archive path as a glob pattern (and finds no "a*b" even escaped).
_GLOB_CHARS = re.compile(r"[*?\[\\]")


def _mounted_by_podman(engine: Engine, name: str) -> bool:
    """Whether Podman mounts the volume (a driver, or local options naming a file system)."""
    info = engine.api.inspect_volume(name)
    options = info.get("Options") or {}
    return info.get("Driver", "local") != "local" or bool({"type", "device"} & set(options))


def _check_target(target: str) -> str:
    if not isinstance(target, str) or not target.startswith("/"):
        raise DockervolUsageError(
            f"mount target {target!r} is not an absolute container path; use e.g. '/data'"
        )
    return target


class Volume(abc.ABC):
    """A volume a test can seed, attach to containers, read back and remove."""

    kind: str

    def __init__(self, name: str) -> None:
        self.name = name
        self._removed = False

    def __repr__(self) -> str:
        state = " removed" if self._removed else ""
        return f"<{type(self).__name__} {self.name}{state}>"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.remove()

    @property
    def removed(self) -> bool:
        return self._removed

    def _check_alive(self) -> None:
        if self._removed:
            raise VolumeRemovedError(self.name)

    def seed(
        self,
        source: SeedSource,
        *,
        dest: str = "",
        uid: int | None = None,
        gid: int | None = None,
        file_mode: int | None = None,
        dir_mode: int | None = None,
    ) -> Self:
        """Copy files in: a mapping of path -> content, a host directory, a tar archive, or a
        callable that receives the volume. Everything is validated before anything is written."""
        __tracebackhide__ = True
        self._check_alive()
        if callable(source):
            if dest or uid is not None or gid is not None or file_mode or dir_mode:
                raise DockervolUsageError(
                    "seed(callable) takes no dest/uid/gid/file_mode/dir_mode: the callable "
                    "seeds the volume itself; pass them to the seed() calls it makes"
                )
            source(self)
            return self
        plan = build_seed_plan(
            source, dest=dest, uid=uid, gid=gid, file_mode=file_mode, dir_mode=dir_mode
        )
        self._write_plan(plan)
        return self

    def read_text(self, path: str, encoding: str = "utf-8") -> str:
        __tracebackhide__ = True
        return self.read_bytes(path).decode(encoding)

    @abc.abstractmethod
    def _write_plan(self, plan: Any) -> None: ...

    @abc.abstractmethod
    def read_bytes(self, path: str) -> bytes:
        """The content of one regular file in the volume."""

    @abc.abstractmethod
    def files(self) -> list[str]:
        """Sorted relative POSIX paths of the regular files in the volume."""

    @abc.abstractmethod
    def mount(self, target: str, *, read_only: bool = False) -> Mount:
        """A ``docker.types.Mount`` for ``containers.run(mounts=[...])``."""

    @abc.abstractmethod
    def volumes_dict(self, target: str, *, read_only: bool = False) -> dict[str, dict[str, str]]:
        """An entry for ``containers.run(volumes=...)``."""

    def cli_spec(self, target: str, *, read_only: bool = False) -> str:
        """The argument of ``docker run -v``."""
        source, options = next(iter(self.volumes_dict(target, read_only=read_only).items()))
        return f"{source}:{options['bind']}:{options['mode']}"

    @abc.abstractmethod
    def remove(self) -> None:
        """Remove the volume now (the end of the test or session would otherwise do it)."""


class DockerVolume(Volume):
    """A volume managed by the Docker engine; read and written through a helper container."""

    def __init__(
        self, engine: Engine, identity: RunIdentity, name: str, creator: str, helper_id: str | None
    ) -> None:
        super().__init__(name)
        self._engine = engine
        self._identity = identity
        self._creator = creator
        self._helper_id = helper_id

    # -- creation ---------------------------------------------------------------------

    @classmethod
    def _check_created(
        cls,
        engine: Engine,
        name: str,
        nonce: str,
        run_id: str | None = None,
        labels: dict[str, str] | None = None,
    ) -> None:
        """Docker answers a create of an existing name with the old volume: the nonce tells."""
        if labels is None:
            labels = engine.api.inspect_volume(name).get("Labels") or {}
        if labels.get(LABEL_NONCE) != nonce:
            same_run = run_id is not None and labels.get(LABEL_RUN) == run_id
            raise VolumeExistsError(name, labels.get(LABEL_CREATOR, "?") if same_run else None)

    #: The factory that made the volume: clones and snapshots are created and cleaned up by it.
    _factory: VolumeFactory | None = None

    #: Where direct seeding may write (see _direct.py): None until asked, False for never.
    _direct_dir: Path | Literal[False] | None = None

    #: A local tmpfs volume holds files only while some container has it mounted: the
    #: engine mounts a fresh, empty tmpfs for each archive call of a never-started helper.
    _tmpfs = False

    def _helper(self) -> str:
        if self._tmpfs:
            raise DockervolUsageError(
                f"volume {self.name} is a tmpfs volume: its files live only while a running "
                "container mounts it, so it cannot be seeded or read from outside; seed it "
                "from the container that uses it, or use a volume without type=tmpfs"
            )
        if self._helper_id is None:
            if self._engine.is_podman and _mounted_by_podman(self._engine, self.name):
                # Podman mounts such a volume only for a running container: the archive API
                # of a never-started helper would read and write the directory beneath it.
                raise DockervolUsageError(
                    f"volume {self.name} has a driver or mount options (type, device), which "
                    "Podman mounts only for a running container: its archive API cannot seed "
                    "or read it; seed it from a container you run, or drop driver_opts"
                )
            mount = Mount(HELPER_MOUNT_POINT, self.name, type="volume", no_copy=True)
            self._helper_id = self._engine.create_helper(
                mount, self._identity.labels("helper", self._creator)
            )
        return self._helper_id

    # -- content ----------------------------------------------------------------------

    def _write_plan(self, plan: Any) -> None:
        __tracebackhide__ = True
        from ._direct import mountpoint

        directory = mountpoint(self)
        if directory is not None:
            plan.write_to(directory)
            return
        self._engine.api.put_archive(self._helper(), HELPER_MOUNT_POINT, plan.tar_chunks())

    def _get_archive(self, inner: str, path: str) -> Any:
        __tracebackhide__ = True
        self._check_alive()
        try:
            stream = self._engine.get_archive(
                self._helper(), f"{HELPER_MOUNT_POINT}/{inner}".rstrip("/")
            )
        except docker.errors.NotFound:
            raise VolumeReadError(self.name, path, "no such file or directory") from None
        return stream

    def read_bytes(self, path: str) -> bytes:
        __tracebackhide__ = True
        inner = check_relative_path(path)
        if self._engine.is_podman and _GLOB_CHARS.search(inner):
            # Read the nearest directory above whose path is no pattern, and pick the file.
            parts = inner.split("/")
            cut = next(i for i, part in enumerate(parts) if _GLOB_CHARS.search(part))
            stream = self._get_archive("/".join(parts[:cut]), path)
            within = "/".join(parts[cut:])
            return read_file_from_tar(stream, inner, volume=self.name, within=within)
        return read_file_from_tar(self._get_archive(inner, path), inner, volume=self.name)

    def files(self) -> list[str]:
        __tracebackhide__ = True
        return list_files_in_tar(self._get_archive("", "."), strip_components=1)

    # -- attaching ----------------------------------------------------------------------

    def mount(self, target: str, *, read_only: bool = False) -> Mount:
        self._check_alive()
        return Mount(_check_target(target), self.name, type="volume", read_only=read_only)

    def volumes_dict(self, target: str, *, read_only: bool = False) -> dict[str, dict[str, str]]:
        self._check_alive()
        return {self.name: {"bind": _check_target(target), "mode": "ro" if read_only else "rw"}}

    # -- removal ------------------------------------------------------------------------

    def remove(self) -> None:
        """Remove this run's containers that use the volume (helper included), then the volume.

        Only resources labelled with this run's id are touched; anything else that
        still uses the volume is named in the error instead.
        """
        __tracebackhide__ = True
        if self._removed:
            return
        api = self._engine.api
        if self._helper_id is not None:  # ours by construction: no need to look it up
            with contextlib.suppress(docker.errors.NotFound):
                api.remove_container(self._helper_id, force=True, v=True)
            self._helper_id = None
        try:
            labels = api.inspect_volume(self.name).get("Labels") or {}
        except docker.errors.NotFound:
            self._removed = True  # e.g. an anonymous volume removed with its anchor (v=True)
            return
        if not self._identity.owns(labels):
            self._removed = True
            raise CleanupError("volume", self.name, "it is no longer labelled as this run's")
        try:
            self._remove_volume_and_our_users(api)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            raise CleanupError("volume", self.name, self._why_not_removed(exc)) from None
        self._removed = True

    def _remove_volume_and_our_users(self, api: Any) -> None:
        """Remove the volume; if it is in use (409), remove this run's containers that use
        it (other workers' helpers, test containers whose teardown comes later) and retry.
        The common case costs one request; the listing only happens when needed."""
        try:
            api.remove_volume(self.name)
            return
        except docker.errors.APIError as exc:
            if exc.status_code != 409:
                raise
        own = api.containers(
            all=True,
            filters={"volume": self.name, "label": f"{LABEL_RUN}={self._identity.run_id}"},
        )
        for container in own:
            with contextlib.suppress(docker.errors.NotFound):
                api.remove_container(container["Id"], force=True, v=True)
        api.remove_volume(self.name)

    def _why_not_removed(self, exc: docker.errors.APIError) -> str:
        users = self._engine.api.containers(all=True, filters={"volume": self.name})
        if users:
            described = ", ".join(
                f"{c['Names'][0].lstrip('/') if c.get('Names') else c['Id'][:12]} ({c['State']})"
                for c in users
            )
            return (
                f"still in use by container(s) not created by pytest-dockervol: {described}; "
                "remove those containers at the end of the test"
            )
        return str(exc.explanation or exc)

    # -- copies: clone, snapshot, restore (implemented in _snapshot.py) -----------------

    def clone(
        self,
        *,
        name: str | None = None,
        labels: dict[str, str] | None = None,
        allow_running: bool = False,
    ) -> NamedVolume:
        """A new named volume with the same files, owners, modes, symlinks and empty dirs,
        removed like any volume the factory made (end of session or ``.remove()``).
        Refused while a running container uses this volume, unless ``allow_running``."""
        __tracebackhide__ = True
        from ._snapshot import clone_volume

        return clone_volume(self, name=name, labels=labels, allow_running=allow_running)

    def snapshot(self, *, allow_running: bool = False) -> Snapshot:
        """The volume's files now, kept in a hidden volume, for ``restore()`` later."""
        __tracebackhide__ = True
        from ._snapshot import take_snapshot

        return take_snapshot(self, allow_running=allow_running)

    def restore(self, snapshot: Snapshot) -> Self:
        """Reset the volume to ``snapshot``: added files go, changed and deleted ones come
        back. The volume is removed and created again (same name and labels), so it is
        refused while a container other than the plugin's helper still uses it."""
        __tracebackhide__ = True
        from ._snapshot import restore_volume

        restore_volume(self, snapshot)
        return self


class NamedVolume(DockerVolume):
    """A volume with a name (given or generated), like ``docker volume create NAME``."""

    kind = "named"

    @classmethod
    def create(
        cls,
        engine: Engine,
        identity: RunIdentity,
        *,
        name: str,
        creator: str,
        labels: dict[str, str],
        nonce: str,
        driver: str | None,
        driver_opts: dict[str, str] | None,
    ) -> Self:
        with refused_as(f"create volume {name}", "check the driver and driver_opts"):
            created = engine.api.create_volume(
                name, driver=driver or "local", driver_opts=driver_opts or {}, labels=labels
            )
        # Docker answers a create of an existing name with the existing volume's labels.
        answered = created.get("Labels") if isinstance(created, dict) else None
        cls._check_created(engine, name, nonce, identity.run_id, answered)
        volume = cls(engine, identity, name, creator, helper_id=None)
        volume._tmpfs = (driver or "local") == "local" and (driver_opts or {}).get(
            "type"
        ) == "tmpfs"
        return volume


class AnonymousVolume(DockerVolume):
    """A real anonymous volume: Docker names it (64 hex) when its anchor container is created.

    The anchor is the helper container, so ``docker rm -v`` of the anchor removes the
    volume too, and Docker 23+ also reclaims it with a plain ``docker volume prune``.
    """

    kind = "anonymous"

    @classmethod
    def create(
        cls,
        engine: Engine,
        identity: RunIdentity,
        *,
        creator: str,
        labels: dict[str, str],
        driver: str | None,
        driver_opts: dict[str, str] | None,
    ) -> AnonymousVolume:
        user_labels = [key for key in labels if not key.startswith(LABEL_PREFIX)]
        if engine.is_podman and (driver or driver_opts or user_labels):
            raise EngineRefusedError(
                "create an anonymous volume",
                "Podman's Docker API ignores the driver, driver_opts and labels of anonymous "
                "volumes",
                "use volume_factory.named() for a volume that needs them",
            )
        driver_config = (
            DriverConfig(driver or "local", driver_opts) if driver or driver_opts else None
        )
        mount = Mount(
            HELPER_MOUNT_POINT,
            None,
            type="volume",
            no_copy=True,
            labels={**labels, ANONYMOUS_VOLUME_LABEL: ""},
            driver_config=driver_config,
        )
        with refused_as("create an anonymous volume", "check the driver and driver_opts"):
            helper_id = engine.create_helper(mount, identity.labels("helper", creator))
        mounts = engine.api.inspect_container(helper_id).get("Mounts") or []
        return cls(engine, identity, str(mounts[0]["Name"]), creator, helper_id=helper_id)


class HostVolume(Volume):
    """A host directory bind-mounted into containers."""

    kind = "host"

    def __init__(
        self,
        path: Path,
        *,
        owned: bool,
        identity: RunIdentity | None = None,
        engine_if_connected: Callable[[], Engine | None] | None = None,
    ) -> None:
        super().__init__(str(path))
        self.path = path
        self._owned = owned
        self._identity = identity
        self._engine_if_connected = engine_if_connected

    def _write_plan(self, plan: Any) -> None:
        plan.write_to(self.path)

    def read_bytes(self, path: str) -> bytes:
        __tracebackhide__ = True
        self._check_alive()
        inner = check_relative_path(path)
        full = self.path / inner
        if full.is_symlink():
            raise VolumeReadError(self.name, path, "is a symbolic link")
        if full.is_dir():
            raise VolumeReadError(self.name, path, "is a directory")
        if not full.is_file():
            raise VolumeReadError(self.name, path, "no such file or directory")
        return full.read_bytes()

    def files(self) -> list[str]:
        self._check_alive()
        found: list[str] = []
        for directory, _dirs, names in os.walk(self.path):
            for name in names:
                full = Path(directory, name)
                if full.is_file() and not full.is_symlink():
                    found.append(full.relative_to(self.path).as_posix())
        return sorted(found)

    def mount(self, target: str, *, read_only: bool = False) -> Mount:
        self._check_alive()
        return Mount(_check_target(target), str(self.path), type="bind", read_only=read_only)

    def volumes_dict(self, target: str, *, read_only: bool = False) -> dict[str, dict[str, str]]:
        self._check_alive()
        return {
            str(self.path): {"bind": _check_target(target), "mode": "ro" if read_only else "rw"}
        }

    def remove(self) -> None:
        """Delete the directory if the plugin made it; a directory the user passed in is kept."""
        __tracebackhide__ = True
        if self._removed:
            return
        self._removed = True
        if not self._owned:
            return
        try:
            shutil.rmtree(self.path)
        except FileNotFoundError:
            pass
        except PermissionError as exc:
            # A container wrote here as root while pytest runs as another user.
            engine = self._engine_if_connected() if self._engine_if_connected else None
            if engine is None or self._identity is None:
                raise self._cleanup_error(exc) from None
            try:
                self._hand_back(engine, self._identity)
                shutil.rmtree(self.path)
            except OSError as again:
                raise self._cleanup_error(again) from None

    def _cleanup_error(self, exc: OSError) -> CleanupError:
        return CleanupError(
            "host directory",
            str(self.path),
            f"{exc.strerror} ({exc.filename}); files written by a container as another "
            "user may need `user=` set on the container to match the host user",
        )

    def _hand_back(self, engine: Engine, identity: RunIdentity) -> None:
        """Give every directory back to this process's user through the archive API (the
        engine extracts as root and applies the tar's owners), so the tree can be deleted.
        No image is run: the helper is created, never started."""
        api = engine.api
        mount = Mount(HELPER_MOUNT_POINT, str(self.path), type="bind")
        helper = engine.create_helper(mount, identity.labels("helper", "host-hand-back"))
        try:
            stream, _stat = api.get_archive(helper, HELPER_MOUNT_POINT)
            directories = [
                (path, info.mode) for path, info in iter_tar_members(stream) if info.isdir()
            ]
            buffer = io.BytesIO()
            with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
                for path, mode in directories:
                    entry = tarfile.TarInfo(path)
                    entry.type = tarfile.DIRTYPE
                    entry.mode = mode | 0o700
                    entry.uid, entry.gid = os.getuid(), os.getgid()
                    tar.addfile(entry)
            api.put_archive(helper, HELPER_MOUNT_POINT, buffer.getvalue())
        finally:
            api.remove_container(helper, force=True)

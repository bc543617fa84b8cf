"""Docker volumes: named and anonymous ones, and snapshots of them.

Their files are read and written through Docker's archive API on a helper container that
is created but never started (``_volume_ops.VolumeHelper``), or, when that is provably the
same, written straight into a local volume's directory (``_direct``). Clones, snapshots
and restores copy from one helper to another (``_volume_ops.copy_files``), never through
the host's disk.
"""

from __future__ import annotations

import re
import stat
import tarfile
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import docker.errors
from docker.types import DriverConfig, Mount

from ._direct import DirectTarget
from ._engine import HELPER_MOUNT_POINT, Engine, refused_as
from ._errors import (
    CleanupError,
    DockervolUsageError,
    EngineRefusedError,
    VolumeCopyError,
    VolumeReadError,
    VolumeRemovedError,
)
from ._identity import (
    ANONYMOUS_VOLUME_LABEL,
    LABEL_CLONE_OF,
    LABEL_PREFIX,
    LABEL_SNAPSHOT_OF,
    check_user_labels,
    check_volume_name,
)
from ._owner import ResourceOwner
from ._seedplan import SeedPlan
from ._seeds import check_relative_path
from ._tarstream import iter_tar_members, list_files_in_tar, read_file_from_tar
from ._volume import Entry, Volume, adopt
from ._volume_ops import (
    VolumeHelper,
    copy_files,
    create_volume,
    keeps_data,
    labels_of,
    recreate_empty,
    refuse_running_users,
    remove_with_own_users,
)

if TYPE_CHECKING:
    from typing_extensions import Self

#: Podman takes an archive path as a glob pattern (and finds no "a*b" even escaped).
_GLOB_CHARS = re.compile(r"[*?\[\\]")
_TYPE_BITS = {tarfile.DIRTYPE: stat.S_IFDIR, tarfile.SYMTYPE: stat.S_IFLNK}


class DockerVolume(Volume):
    """A volume managed by the Docker engine; read and written through a helper container."""

    def __init__(
        self,
        owner: ResourceOwner,
        engine: Engine,
        name: str,
        *,
        creator: str,
        helper_id: str | None = None,
        tmpfs: bool = False,
    ) -> None:
        super().__init__(name)
        self._owner = owner
        self._engine = engine
        self._helper = VolumeHelper(
            engine, name, owner.identity, creator, container=helper_id, tmpfs=tmpfs
        )
        self._direct = DirectTarget(engine, name, self.read_bytes)

    # -- content --------------------------------------------------------------------------

    def _write_plan(self, plan: SeedPlan) -> None:
        __tracebackhide__ = True
        directory = self._direct.directory()
        if directory is not None:
            plan.write_to(directory)
            return
        self._helper.put_archive(plan.tar_chunks())

    def _archive(self, inner: str, path: str) -> Iterator[bytes]:
        __tracebackhide__ = True
        self._check_alive()
        try:
            return self._helper.get_archive(inner)
        except docker.errors.NotFound:
            raise VolumeReadError(self.name, path, "no such file or directory") from None

    def read_bytes(self, path: str) -> bytes:
        __tracebackhide__ = True
        inner = check_relative_path(path)
        if self._engine.is_podman and _GLOB_CHARS.search(inner):
            # Read the nearest directory above whose path is no pattern, and pick the file.
            parts = inner.split("/")
            cut = next(i for i, part in enumerate(parts) if _GLOB_CHARS.search(part))
            stream = self._archive("/".join(parts[:cut]), path)
            within = "/".join(parts[cut:])
            return read_file_from_tar(stream, inner, volume=self.name, within=within)
        return read_file_from_tar(self._archive(inner, path), inner, volume=self.name)

    def files(self) -> list[str]:
        __tracebackhide__ = True
        return list_files_in_tar(self._archive("", "."), strip_components=1)

    def entries(self) -> Iterator[Entry]:
        # Podman's archives give every member the helper's owner (root), not the file's.
        owners_known = not self._engine.is_podman
        for path, info in iter_tar_members(self._archive("", ".")):
            mode = _TYPE_BITS.get(info.type, stat.S_IFREG) | info.mode
            uid, gid = (info.uid, info.gid) if owners_known else (None, None)
            yield Entry(path, mode, uid, gid, info.size, info.linkname)

    # -- removal --------------------------------------------------------------------------

    def remove(self) -> None:
        """Remove this run's containers that use the volume (helper included), then the volume.

        Only resources labelled with this run's id are touched; anything else that
        still uses the volume is named in the error instead.
        """
        __tracebackhide__ = True
        if self._removed:
            return
        self._helper.drop(with_anonymous_volume=True)
        try:
            labels = self._engine.api.inspect_volume(self.name).get("Labels") or {}
        except docker.errors.NotFound:
            self._removed = True  # e.g. an anonymous volume removed with its anchor (v=True)
            return
        if not self._owner.identity.owns(labels):
            self._removed = True
            raise CleanupError("volume", self.name, "it is no longer labelled as this run's")
        remove_with_own_users(self._engine, self._owner.identity, self.name)
        self._removed = True

    # -- copies ---------------------------------------------------------------------------

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
        if name is not None:
            check_volume_name(name)
        extra = check_user_labels(labels)
        self._check_alive()
        source_labels = labels_of(self._engine, self.name)
        if not allow_running:
            refuse_running_users(self._engine, self.name, "clone")
        kept = {
            key: value
            for key, value in source_labels.items()
            if not key.startswith(LABEL_PREFIX) and key != ANONYMOUS_VOLUME_LABEL
        }
        return self._copy_into_new(
            name or self._owner.next_name(),
            kind="clone",
            labels={**kept, **extra, LABEL_CLONE_OF: self.name},
        )

    def snapshot(self, *, allow_running: bool = False) -> Snapshot:
        """The volume's files now, kept in a hidden volume, for ``restore()`` later."""
        __tracebackhide__ = True
        self._check_alive()
        labels_of(self._engine, self.name)  # removed behind the object's back: a clear error
        if not allow_running:
            refuse_running_users(self._engine, self.name, "snapshot")
        storage = self._copy_into_new(
            check_volume_name(f"{self._owner.next_name()}-snap"),
            kind="snapshot",
            labels={LABEL_SNAPSHOT_OF: self.name},
        )
        return Snapshot(self, storage)

    def restore(self, snapshot: Snapshot) -> Self:
        """Reset the volume to ``snapshot``: added files go, changed and deleted ones come
        back. The volume is removed and created again (same name and labels), so it is
        refused while a container other than the plugin's helper still uses it."""
        __tracebackhide__ = True
        if not isinstance(snapshot, Snapshot):
            raise DockervolUsageError(
                f"restore() takes a Snapshot, not {type(snapshot).__name__}; "
                "take one with volume.snapshot()"
            )
        self._check_alive()
        snapshot._check_alive()
        if snapshot.storage.name == self.name:
            raise DockervolUsageError(
                f"volume {self.name} is the snapshot's own storage; restore the volume "
                "the snapshot was taken of"
            )
        info = recreate_empty(self._helper, kind=self.kind)
        if keeps_data(info) and not self._helper.holds_only_root():
            raise VolumeCopyError(
                snapshot.name,
                self.name,
                f"the volume still holds files after being created again (its driver "
                f"{info.get('Driver')!r} with options {info.get('Options')} keeps data); "
                "restore works for volumes whose removal deletes their data",
            )
        copy_files(snapshot.storage._helper, self._helper)
        return self

    def _copy_into_new(self, name: str, *, kind: str, labels: dict[str, str]) -> NamedVolume:
        """A new named volume with this volume's files, registered before it is filled."""
        __tracebackhide__ = True
        copy = NamedVolume.create(self._owner, name, kind=kind, labels=labels)
        return adopt(self._owner, copy, lambda _: copy_files(self._helper, copy._helper))


class NamedVolume(DockerVolume):
    """A volume with a name (given or generated), like ``docker volume create NAME``."""

    kind = "named"

    @classmethod
    def create(
        cls,
        owner: ResourceOwner,
        name: str,
        *,
        kind: str,
        labels: dict[str, str],
        driver: str | None = None,
        driver_opts: dict[str, str] | None = None,
    ) -> Self:
        """Create a volume labelled as the owner's run (its cleanup is the caller's: adopt)."""
        engine, identity, creator = owner.creating_engine, owner.identity, owner.creator
        create_volume(
            engine,
            name,
            labels={**labels, **identity.labels(kind, creator)},
            run_id=identity.run_id,
            driver=driver,
            driver_opts=driver_opts,
        )
        tmpfs = (driver or "local") == "local" and (driver_opts or {}).get("type") == "tmpfs"
        return cls(owner, engine, name, creator=creator, tmpfs=tmpfs)


class AnonymousVolume(DockerVolume):
    """A real anonymous volume: Docker names it (64 hex) when its anchor container is created.

    The anchor is the helper container, so ``docker rm -v`` of the anchor removes the
    volume too, and Docker 23+ also reclaims it with a plain ``docker volume prune``.
    """

    kind = "anonymous"

    @classmethod
    def create(
        cls,
        owner: ResourceOwner,
        *,
        labels: dict[str, str],
        driver: str | None = None,
        driver_opts: dict[str, str] | None = None,
    ) -> Self:
        """Create one labelled as the owner's run (its cleanup is the caller's: adopt)."""
        engine, identity, creator = owner.creating_engine, owner.identity, owner.creator
        if engine.is_podman and (driver or driver_opts or labels):
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
            labels={**labels, **identity.labels(cls.kind, creator), ANONYMOUS_VOLUME_LABEL: ""},
            driver_config=driver_config,
        )
        with refused_as("create an anonymous volume", "check the driver and driver_opts"):
            helper_id = engine.create_helper(mount, identity.labels("helper", creator))
        mounts: list[dict[str, Any]] = engine.api.inspect_container(helper_id).get("Mounts") or []
        name = str(mounts[0]["Name"])
        return cls(owner, engine, name, creator=creator, helper_id=helper_id)


class Snapshot:
    """The files of a volume at one moment, kept in a hidden volume (label kind=snapshot).

    ``volume.restore(snapshot)`` or ``snapshot.restore()`` puts them back, as often as
    needed. The hidden volume is removed at the end of the session, or by ``.remove()``.
    """

    kind = "snapshot"

    def __init__(self, source: DockerVolume, storage: NamedVolume) -> None:
        self.source = source
        self.storage = storage

    def __repr__(self) -> str:
        state = " removed" if self.removed else ""
        return f"<Snapshot of {self.source.name} in {self.storage.name}{state}>"

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.remove()

    @property
    def name(self) -> str:
        """The name of the hidden volume that holds the snapshot."""
        return self.storage.name

    @property
    def removed(self) -> bool:
        return self.storage.removed

    def restore(self) -> None:
        """Reset the volume the snapshot was taken of to it (see ``DockerVolume.restore``)."""
        __tracebackhide__ = True
        self.source.restore(self)

    def clone(
        self, *, name: str | None = None, labels: dict[str, str] | None = None
    ) -> NamedVolume:
        """A new volume holding the snapshot's files."""
        __tracebackhide__ = True
        self._check_alive()
        return self.storage.clone(name=name, labels=labels)

    def files(self) -> list[str]:
        """Sorted relative paths of the regular files in the snapshot."""
        __tracebackhide__ = True
        self._check_alive()
        return self.storage.files()

    def read_bytes(self, path: str) -> bytes:
        __tracebackhide__ = True
        self._check_alive()
        return self.storage.read_bytes(path)

    def read_text(self, path: str, encoding: str = "utf-8") -> str:
        __tracebackhide__ = True
        return self.read_bytes(path).decode(encoding)

    def remove(self) -> None:
        """Remove the hidden volume now (the end of the session would otherwise do it)."""
        __tracebackhide__ = True
        self.storage.remove()

    def _check_alive(self) -> None:
        if self.storage.removed:
            raise VolumeRemovedError(self.storage.name)

"""Docker volumes: named and anonymous ones, and snapshots of them.

Their files are read and written through Docker's archive API on a helper container that
is created but never started (``_volume_ops.VolumeHelper``), or, when that is provably the
same, written straight into a local volume's directory (``_direct``). Clones, snapshots
and restores copy from one helper to another (``_volume_ops.copy_files``), never through
the host's disk.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from .._engine.engine import SUBPATH_MOUNTS, Engine, EngineNotFound
from .._engine.labels import (
    ANONYMOUS_VOLUME_LABEL,
    LABEL_CLONE_OF,
    LABEL_LAYER,
    LABEL_PREFIX,
    LABEL_SNAPSHOT_OF,
    check_user_labels,
    check_volume_name,
)
from .._errors import CleanupError, DockervolUsageError, VolumeRemovedError
from .._seeding.plan import SeedPlan
from .base import HeldResource, adopt, check_subpath
from .cow import (
    CannotLayer,
    layer_plan,
    layering_of,
    lower_dirs,
    needs_labels,
    overlay_options,
)
from .direct import DirectTarget
from .helper import (
    Entry,
    VolumeHelper,
    copy_files,
    create_volume,
    is_tmpfs,
    labels_of,
    recreate_empty,
    refill,
    refuse_running_users,
    remove_with_own_users,
)
from .layered import LayeredVolume
from .owner import ResourceOwner

if TYPE_CHECKING:
    from typing_extensions import Self

log = logging.getLogger("pytest_dockervol")


class DockerVolume(LayeredVolume):
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
        super().__init__(name, engine)
        self._owner = owner
        self._helper = VolumeHelper(
            engine, name, owner.identity, creator, container=helper_id, tmpfs=tmpfs
        )
        self._direct = DirectTarget(engine, name, self.read_bytes)

    @classmethod
    def create(
        cls,
        owner: ResourceOwner,
        name: str | None,
        *,
        kind: str,
        labels: dict[str, str],
        driver: str | None = None,
        driver_opts: dict[str, str] | None = None,
    ) -> Self:
        """Create one on the engine, labelled as the owner's run and as ``kind`` (its cleanup
        is the caller's: ``adopt``). ``name`` None: the engine names it (anonymous)."""
        __tracebackhide__ = True
        full_labels = {**labels, **owner.identity.labels(kind, owner.creator)}
        name, helper_id = cls._create_on_engine(
            owner, name, full_labels, labels, driver, driver_opts
        )
        volume = cls(
            owner,
            owner.creating_engine,
            name,
            creator=owner.creator,
            helper_id=helper_id,
            tmpfs=is_tmpfs(driver, driver_opts),  # its seed is refused, as a named one's
        )
        volume.kind = kind  # a clone says "clone", as its label does
        return volume

    @classmethod
    def _create_on_engine(
        cls,
        owner: ResourceOwner,
        name: str | None,
        labels: dict[str, str],
        user_labels: dict[str, str],
        driver: str | None,
        driver_opts: dict[str, str] | None,
    ) -> tuple[str, str | None]:
        """Make the volume on the engine: its name, and the helper made with it, if any
        (a named volume by ``docker volume create``, with proof that it is new)."""
        if name is None:
            raise DockervolUsageError("a named volume needs a name: owner.next_name() makes one")
        create_volume(
            owner.creating_engine,
            name,
            labels=labels,
            run_id=owner.identity.run_id,
            driver=driver,
            driver_opts=driver_opts,
        )
        return name, None

    # -- content --------------------------------------------------------------------------

    def _write_plan(self, plan: SeedPlan) -> None:
        __tracebackhide__ = True
        directory = self._direct.directory()
        if directory is not None:
            plan.write_to(directory, volume=self.name)
            return
        self._helper.write_seed(plan.tar_chunks())

    def read_bytes(self, path: str) -> bytes:
        __tracebackhide__ = True
        self._check_alive()
        return self._helper.read_file(path)

    def files(self) -> list[str]:
        __tracebackhide__ = True
        self._check_alive()
        return self._helper.list_files()

    def entries(self) -> Iterator[Entry]:
        self._check_alive()
        return self._helper.entries()

    def _subpath(self, subpath: str) -> str:
        """The path first (the same answer on every engine), then the engine's version."""
        __tracebackhide__ = True
        checked = check_subpath(subpath)
        self._engine.require(SUBPATH_MOUNTS)
        return checked

    # -- removal --------------------------------------------------------------------------

    def _remove_from_engine(self) -> None:
        """Remove this run's containers that use the volume (helper included), then the volume.

        Only resources labelled with this run's id are touched; anything else that
        still uses the volume is named in the error instead.
        """
        __tracebackhide__ = True
        self._helper.drop(with_anonymous_volume=True)
        try:
            labels = self._engine.inspect_volume(self.name).get("Labels") or {}
        except EngineNotFound:
            return  # e.g. an anonymous volume removed with its anchor (v=True)
        if not self._owner.identity.owns(labels):
            self._removed = True
            raise CleanupError("volume", self.name, "it is no longer labelled as this run's")
        remove_with_own_users(self._engine, self._owner.identity, self.name)

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
        Copy-on-write where the engine allows it, else a full copy.
        Refused while a running container uses this volume, unless ``allow_running``.

        Raises:
            VolumeNameError, LabelError: a bad name or label.
            VolumeInUseError: a running container uses the volume (and not ``allow_running``).
            VolumeExistsError: ``name`` exists already.
            VolumeCopyError: copying failed (nothing is left).
            VolumeRemovedError: the volume was removed.
        """
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
        name = name or self._owner.next_name()
        labels = {**kept, **extra, LABEL_CLONE_OF: self.name}
        why_not = self._owner.copy_on_write.reason_not
        running = allow_running and self._engine.containers_using(self.name, status="running")
        if why_not is None and running:
            why_not = "a running container may change the source"
        if why_not is None:
            try:
                return self._layered_clone(name, labels)
            except CannotLayer as exc:
                why_not = str(exc)
        log.debug("clone of %s into %s is a full copy: %s", self.name, name, why_not)
        return self._copy_into_new(name, kind="clone", labels=labels)

    def _new_layer(self) -> tuple[Layer, dict[str, str], set[str]]:
        """A layer volume for an overlay of this volume: the overlay's options and the
        volumes it then reads (CannotLayer, with nothing left, if it cannot be one)."""
        __tracebackhide__ = True
        lowers, needs, root = layering_of(self._helper)
        owner = self._owner
        layer = Layer.create(owner, f"{owner.next_name()}-layer", kind="layer", labels={})
        try:
            adopt(owner, layer, layer_plan(root))
            layer._helper.drop()  # it would pin the layer volume for nothing
            directory = str(self._engine.inspect_volume(layer.name).get("Mountpoint") or "")
            options = overlay_options(lowers, directory)
        except BaseException:
            owner.finalize(layer)
            raise
        return layer, options, needs | {layer.name}

    def _layered_clone(self, name: str, labels: dict[str, str]) -> NamedVolume:
        __tracebackhide__ = True
        layer, options, needs = self._new_layer()
        try:
            clone = NamedVolume.create(
                self._owner,
                name,
                kind="clone",
                labels={**labels, LABEL_LAYER: layer.name, **needs_labels(needs)},
                driver="local",
                driver_opts=options,
            )
        except BaseException:
            self._owner.finalize(layer)
            raise
        self._read_by(clone, layer)
        return adopt(self._owner, clone)

    def snapshot(self, *, allow_running: bool = False) -> Snapshot:
        """The volume's files now, kept in a hidden volume, for ``restore()`` later.

        Raises:
            VolumeInUseError: a running container uses the volume (and not ``allow_running``).
            VolumeCopyError: copying failed (nothing is left).
            VolumeRemovedError: the volume was removed.
        """
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
        refused while a container other than the plugin's helper still uses it. Where the
        engine allows, the volume becomes a copy-on-write overlay of the snapshot.

        Raises:
            DockervolUsageError: ``snapshot`` is not a Snapshot, or is this volume's own storage.
            VolumeInUseError: a container other than the plugin's helper uses the volume.
            ClonesAliveError: copy-on-write clones read the volume.
            VolumeCopyError: copying failed (the volume is incomplete: restore it again).
            VolumeRemovedError: the volume or the snapshot was removed.
        """
        __tracebackhide__ = True
        if not isinstance(snapshot, Snapshot):
            raise DockervolUsageError(
                f"restore() takes a Snapshot, not {type(snapshot).__name__}; "
                "take one with volume.snapshot()"
            )
        self._check_writable("restore")
        if snapshot.removed:
            raise VolumeRemovedError(snapshot.name)
        storage = snapshot.storage
        if storage.name == self.name:
            raise DockervolUsageError(
                f"volume {self.name} is the snapshot's own storage; restore the volume "
                "the snapshot was taken of"
            )
        why_not = self._owner.copy_on_write.reason_not
        if why_not is None:
            try:
                lower_dirs(self.name, self._engine.inspect_volume(self.name))
                layer, options, needs = storage._new_layer()
            except CannotLayer as exc:
                why_not = str(exc)
        if why_not is None:
            try:
                recreate_empty(
                    self._helper,
                    kind=self.kind,
                    driver_opts=options,
                    layer_labels={LABEL_LAYER: layer.name, **needs_labels(needs)},
                )
            except BaseException:
                self._owner.finalize(layer)
                raise
            self._release_layers()
            self._read_from(storage, layer)
            return self
        log.debug("restore of %s is a full copy: %s", self.name, why_not)
        refill(self._helper, storage._helper, kind=self.kind, plain=self.copy_on_write)
        self._release_layers()
        return self

    def _copy_into_new(self, name: str, *, kind: str, labels: dict[str, str]) -> NamedVolume:
        """A new named volume with this volume's files, registered before it is filled."""
        __tracebackhide__ = True
        copy = NamedVolume.create(self._owner, name, kind=kind, labels=labels)
        return adopt(self._owner, copy, lambda _: copy_files(self._helper, copy._helper))


class NamedVolume(DockerVolume):
    """A volume with a name (given or generated), like ``docker volume create NAME``."""

    kind = "named"


class Layer(NamedVolume):
    """The hidden volume that holds a copy-on-write volume's ``upper`` and ``work``
    directories; removed with that volume."""

    kind = "layer"
    removed_with_last_reader = True


class Snapshot(HeldResource):
    """The files of a volume at one moment, kept in a hidden volume (label kind=snapshot).

    ``volume.restore(snapshot)`` or ``snapshot.restore()`` puts them back, as often as
    needed. The hidden volume is removed at the end of the session, or by ``.remove()``.
    """

    kind = "snapshot"

    def __init__(self, source: DockerVolume, storage: NamedVolume) -> None:
        self.source = source
        self.storage = storage

    def _describe(self) -> str:
        return f"of {self.source.name} in {self.storage.name}"

    @property
    def name(self) -> str:  # type: ignore[override]
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
        """A new volume holding the snapshot's files.

        Raises:
            VolumeRemovedError: the snapshot was removed.
            DockervolUsageError: a bad name or label.
            VolumeCopyError: copying failed (nothing is left).
        """
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

    def remove(self) -> None:
        """Remove the hidden volume now (the end of the session would otherwise do it)."""
        __tracebackhide__ = True
        self.storage.remove()

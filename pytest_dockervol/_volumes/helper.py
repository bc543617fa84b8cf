"""What the engine does to one Docker volume, by its name: create it with proof that it is
new, find who uses it, remove it with this run's containers, empty it by creating it again,
and stream its files into another volume.

No volume objects here: these are the engine-side steps that ``_docker_volume`` composes,
and the helper container through which a volume is read and written.
Copies go through Docker's archive API on never-started helper containers, so nothing is
pulled and nothing runs in a volume; the stream is checked as it passes and never held.
"""

from __future__ import annotations

import contextlib
import re
import stat
import tarfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from .._engine.engine import (
    HELPER_MOUNT_POINT,
    Engine,
    EngineAPIError,
    EngineNotFound,
    Mount,
    describe_containers,
    engine_error_reason,
    engine_errors_as,
    refused_as,
)
from .._engine.labels import (
    ANONYMOUS_VOLUME_LABEL,
    LABEL_CREATOR,
    LABEL_KIND,
    LABEL_LAYER,
    LABEL_NEEDS,
    LABEL_NONCE,
    LABEL_RUN,
    RunIdentity,
)
from .._errors import (
    CleanupError,
    DockervolUsageError,
    EngineRefusedError,
    SeedWriteError,
    VolumeCopyError,
    VolumeExistsError,
    VolumeInUseError,
    VolumeReadError,
    VolumeRemovedError,
)
from .._seeding.sources import check_relative_path
from .._seeding.tarstream import (
    checked_archive,
    holds_only_root,
    iter_tar_members,
    list_files_in_tar,
    peek_first_name,
    read_file_from_tar,
)

#: Podman takes an archive path as a glob pattern (and finds no "a*b" even escaped).
_GLOB_CHARS = re.compile(r"[*?\[\\]")
_TYPE_BITS = {tarfile.DIRTYPE: stat.S_IFDIR, tarfile.SYMTYPE: stat.S_IFLNK}


_RUNNING = {"running", "paused", "restarting"}
_STOP_FIRST = (
    "stop and remove those containers first (container.remove(force=True)), "
    "restore, then start new ones on the volume"
)


def create_volume(
    engine: Engine,
    name: str,
    *,
    labels: dict[str, str],
    run_id: str,
    driver: str | None = None,
    driver_opts: dict[str, str] | None = None,
) -> None:
    """Create ``name``; refuse (VolumeExistsError) a name that exists already.

    Docker answers a create of an existing name with the old volume: a fresh nonce label
    on the answer is the proof that this call made it.
    """
    nonce = uuid.uuid4().hex
    with refused_as(f"create volume {name}", "check the driver and driver_opts"):
        created = engine.create_volume(
            name,
            driver=driver or "local",
            driver_opts=driver_opts or {},
            labels={**labels, LABEL_NONCE: nonce},
        )
    answered = created.get("Labels") if isinstance(created, dict) else None
    if answered is None:
        answered = engine.inspect_volume(name).get("Labels") or {}
    if answered.get(LABEL_NONCE) != nonce:
        same_run = answered.get(LABEL_RUN) == run_id
        raise VolumeExistsError(name, answered.get(LABEL_CREATOR, "?") if same_run else None)


def labels_of(engine: Engine, name: str) -> dict[str, str]:
    """The volume's labels; a volume removed behind the plugin's back is VolumeRemovedError."""
    try:
        info = engine.inspect_volume(name)
    except EngineNotFound:
        raise VolumeRemovedError(name) from None
    return dict(info.get("Labels") or {})


def remove_with_own_users(engine: Engine, identity: RunIdentity, name: str) -> None:
    """Remove the volume. If it is in use (409), remove this run's containers that use it
    (other workers' helpers, test containers whose teardown comes later) and retry: the
    common case costs one request. Anything else still using it is named in a CleanupError.
    """
    try:
        try:
            engine.remove_volume(name)
            return
        except EngineAPIError as exc:
            if exc.status_code != 409:
                raise
        for container in engine.containers_using(name, label=f"{LABEL_RUN}={identity.run_id}"):
            with contextlib.suppress(EngineNotFound):
                engine.remove_container(container["Id"], force=True, v=True)
        engine.remove_volume(name)
    except EngineNotFound:
        pass
    except EngineAPIError as exc:
        users = engine.containers_using(name)
        why = str(exc.explanation or exc)
        if users:
            why = (
                "still in use by container(s) not created by pytest-dockervol: "
                f"{describe_containers(users)}; remove those containers at the end of the test"
            )
        raise CleanupError("volume", name, why) from None


def refuse_running_users(engine: Engine, name: str, action: str) -> None:
    """A copy of a volume a running container writes to (a live database) is inconsistent."""
    running = [c for c in engine.containers_using(name) if c.get("State") in _RUNNING]
    if running:
        raise VolumeInUseError(
            name,
            action,
            "container(s) " + describe_containers(running),
            "stop them first (container.stop()) so the files are consistent, or pass "
            "allow_running=True to copy a volume that may change while it is copied",
        )


def _is_own_helper(container: dict[str, Any], identity: RunIdentity) -> bool:
    labels = container.get("Labels") or {}
    return identity.owns(labels) and labels.get(LABEL_KIND) == "helper"


def recreate_empty(
    helper: VolumeHelper,
    *,
    kind: str,
    driver_opts: dict[str, str] | None = None,
    layer_labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Empty the helper's volume the only way the archive API allows: remove it and create
    it again with the same name, driver, options and labels. Refused unless it is this
    run's and no container but this run's helpers uses it. Returns its inspect data.

    ``driver_opts`` replaces the options, and ``layer_labels`` the copy-on-write labels
    (which layers it reads): a restore may turn a volume into an overlay, or back."""
    engine, name, identity = helper.engine, helper.volume, helper._identity
    try:
        info: dict[str, Any] = engine.inspect_volume(name)
    except EngineNotFound:
        raise VolumeRemovedError(name) from None
    labels: dict[str, str] = dict(info.get("Labels") or {})
    users = engine.containers_using(name)
    # Podman labels no anonymous volume: this run's helper anchoring it is the proof, and
    # the volume made again carries the labels Docker would have given it.
    anchored = any(_is_own_helper(c, identity) for c in users)
    if engine.is_podman and kind == "anonymous" and not labels and anchored:
        labels = {**identity.labels("anonymous", helper._creator), ANONYMOUS_VOLUME_LABEL: ""}
    if not identity.owns(labels):
        raise DockervolUsageError(
            f"volume {name} is not labelled as this run's; "
            "only volumes this test run created can be restored"
        )
    foreign = [c for c in users if not _is_own_helper(c, identity)]
    if foreign:
        raise VolumeInUseError(
            name, "restore", "container(s) " + describe_containers(foreign), _STOP_FIRST
        )
    for own_helper in users:  # never with v=True: an anonymous volume goes with its anchor
        with contextlib.suppress(EngineNotFound):
            engine.remove_container(own_helper["Id"], force=True, v=False)
    helper._container = None  # removed just now with the others; made again when needed
    try:
        engine.remove_volume(name)
    except EngineNotFound:
        pass
    except EngineAPIError as exc:  # a container started since we looked?
        users = engine.containers_using(name)
        if users:
            raise VolumeInUseError(
                name, "restore", "container(s) " + describe_containers(users), _STOP_FIRST
            ) from None
        raise EngineRefusedError(
            f"remove volume {name} to restore it",
            engine_error_reason(exc),
            "its files are unchanged; fix the cause and restore again",
        ) from None
    kept = {k: v for k, v in labels.items() if k != LABEL_NONCE}
    if layer_labels is not None:
        kept = {k: v for k, v in kept.items() if k != LABEL_LAYER and not k.startswith(LABEL_NEEDS)}
    create_volume(
        engine,
        name,
        labels={**kept, **(layer_labels or {})},
        run_id=identity.run_id,
        driver=info.get("Driver"),
        driver_opts=info.get("Options") if driver_opts is None else driver_opts,
    )
    return info


def keeps_data(info: dict[str, Any]) -> bool:
    """Whether removing the volume may leave its files: the local driver deletes them,
    unless it mounts a device or a bind (``device`` option); other drivers may keep them."""
    return info.get("Driver") != "local" or "device" in (info.get("Options") or {})


def refill(target: VolumeHelper, source: VolumeHelper, *, kind: str, plain: bool) -> None:
    """Empty ``target``'s volume (``plain``: as a volume without options, no longer an
    overlay) and copy ``source``'s files into it: a restore by full copy."""
    empty: dict[str, str] | None = {} if plain else None
    info = recreate_empty(target, kind=kind, driver_opts=empty, layer_labels=empty)
    if keeps_data(info) and not target.holds_only_root():
        raise VolumeCopyError(
            source.volume,
            target.volume,
            f"the volume still holds files after being created again (its driver "
            f"{info.get('Driver')!r} with options {info.get('Options')} keeps data); "
            "restore works for volumes whose removal deletes their data",
        )
    copy_files(source, target)


def is_tmpfs(driver: str | None, driver_opts: dict[str, str] | None) -> bool:
    """Whether the volume is a local tmpfs: its files live only while a running container
    mounts it (a never-started helper gets a fresh, empty one per archive call), so its
    helper refuses seeds and reads. Named and anonymous volumes alike ask this."""
    return (driver or "local") == "local" and (driver_opts or {}).get("type") == "tmpfs"


def tmpfs_refusal(what: str) -> DockervolUsageError:
    return DockervolUsageError(
        f"{what} is a tmpfs volume: its files live only while a running container mounts "
        "it, so it cannot be seeded or read from outside; seed it from the container that "
        "uses it, or use a volume without type=tmpfs"
    )


def refuse_tmpfs_seed(driver: str | None, driver_opts: dict[str, str] | None, seed: object) -> None:
    """A seed for a tmpfs volume would be lost: refused before the volume is created, on
    every engine (Podman may refuse the tmpfs options themselves)."""
    if seed is not None and is_tmpfs(driver, driver_opts):
        raise tmpfs_refusal("the new volume")


@dataclass(frozen=True)
class Entry:
    """One path in a volume, as ``ls -l`` shows it."""

    path: str  #: relative to the volume root
    mode: int  #: ``st_mode``: the file type bits and the permissions
    uid: int | None  #: None where the engine does not say (Podman's archives)
    gid: int | None
    size: int
    link: str = ""  #: a symbolic link's target


class VolumeHelper:
    """The never-started container through which one volume's files are read and written,
    made on first use. It mounts the volume at ``/v`` and exists only for archive calls."""

    def __init__(
        self,
        engine: Engine,
        volume: str,
        identity: RunIdentity,
        creator: str,
        *,
        container: str | None = None,
        tmpfs: bool = False,
    ) -> None:
        self.engine = engine
        self.volume = volume
        self._identity = identity
        self._creator = creator
        self._container = container
        #: A local tmpfs volume holds files only while some container has it mounted: the
        #: engine mounts a fresh, empty tmpfs for each archive call of a never-started helper.
        self._tmpfs = tmpfs

    @property
    def container(self) -> str:
        """The helper's id, created now if this process has none."""
        if self._tmpfs:
            raise tmpfs_refusal(f"volume {self.volume}")
        if self._container is None:
            if self.engine.is_podman and self._podman_mounts_it():
                # Podman mounts such a volume only for a running container: the archive API
                # of a never-started helper would read and write the directory beneath it.
                raise DockervolUsageError(
                    f"volume {self.volume} has a driver or mount options (type, device), which "
                    "Podman mounts only for a running container: its archive API cannot seed "
                    "or read it; seed it from a container you run, or drop driver_opts"
                )
            mount = Mount(HELPER_MOUNT_POINT, self.volume, type="volume", no_copy=True)
            labels = self._identity.labels("helper", self._creator)
            self._container = self.engine.create_helper(mount, labels)
        return self._container

    def _podman_mounts_it(self) -> bool:
        """Whether Podman mounts the volume (a driver, or local options naming a file system)."""
        info = self.engine.inspect_volume(self.volume)
        options = info.get("Options") or {}
        return info.get("Driver", "local") != "local" or bool({"type", "device"} & set(options))

    def drop(self, *, with_anonymous_volume: bool = False) -> None:
        """Remove the helper container, if this process made one (made again when needed).
        An anonymous volume's helper is its anchor: ``with_anonymous_volume`` removes the
        volume with it (``docker rm -v``), else the volume stays."""
        if self._container is not None:  # ours by construction: no need to look it up
            with contextlib.suppress(EngineNotFound):
                self.engine.remove_container(self._container, force=True, v=with_anonymous_volume)
            self._container = None

    def get_archive(self, inner: str = "") -> Iterator[bytes]:
        """A tar stream of ``inner`` (a checked relative path; "" for the whole volume)."""
        path = f"{HELPER_MOUNT_POINT}/{inner}".rstrip("/")
        return self.engine.get_archive(self.container, path)

    def put_archive(self, chunks: Iterable[bytes], *, at: str = HELPER_MOUNT_POINT) -> None:
        """Extract a tar stream at ``at``: by default the volume root, so its names are
        relative to it; at ``/`` a stream whose root member is ``v`` (see copy_files)."""
        self.engine.put_archive(self.container, at, chunks)

    def write_seed(self, chunks: Iterable[bytes]) -> None:
        """Extract a checked seed's tar stream into the volume. The engine extracts as the
        stream arrives, so a failure part-way (a full disk, a container racing the writes)
        leaves part of it: a SeedWriteError that keeps the engine's cause and says so."""
        __tracebackhide__ = True
        container = self.container  # made first: a failure to make it wrote nothing
        with engine_errors_as(lambda why: SeedWriteError(self.volume, why)):
            self.engine.put_archive(container, HELPER_MOUNT_POINT, chunks)

    def holds_only_root(self) -> bool:
        """Whether the volume holds nothing but its root directory."""
        stream = self.get_archive()
        try:
            return holds_only_root(stream)
        finally:
            close_stream(stream)

    # -- reading the volume's files ----------------------------------------------------

    def _archive_of(self, inner: str, path: str) -> Iterator[bytes]:
        __tracebackhide__ = True
        try:
            return self.get_archive(inner)
        except EngineNotFound:
            raise VolumeReadError(self.volume, path, "no such file or directory") from None

    def read_file(self, path: str) -> bytes:
        """The content of one regular file of the volume (``path`` relative to its root); an
        engine error, also one in mid-stream, is a one-line ``VolumeReadError``."""
        __tracebackhide__ = True
        with engine_errors_as(lambda why: VolumeReadError(self.volume, path, why)):
            inner = check_relative_path(path)
            if self.engine.is_podman and _GLOB_CHARS.search(inner):
                # Read the nearest directory above whose path is no pattern, and pick the file.
                parts = inner.split("/")
                cut = next(i for i, part in enumerate(parts) if _GLOB_CHARS.search(part))
                stream = self._archive_of("/".join(parts[:cut]), path)
                within = "/".join(parts[cut:])
                return read_file_from_tar(stream, inner, volume=self.volume, within=within)
            return read_file_from_tar(self._archive_of(inner, path), inner, volume=self.volume)

    def list_files(self) -> list[str]:
        """Sorted relative paths of the volume's regular files."""
        __tracebackhide__ = True
        with engine_errors_as(lambda why: VolumeReadError(self.volume, ".", why)):
            return list_files_in_tar(self._archive_of("", "."), strip_components=1)

    def entries(self) -> Iterator[Entry]:
        """Every path of the volume with type, mode, owner and size, lazily."""
        # Podman's archives give every member the helper's owner (root), not the file's.
        owners_known = not self.engine.is_podman
        with engine_errors_as(lambda why: VolumeReadError(self.volume, ".", why)):
            for path, info in iter_tar_members(self._archive_of("", ".")):
                mode = _TYPE_BITS.get(info.type, stat.S_IFREG) | info.mode
                uid, gid = (info.uid, info.gid) if owners_known else (None, None)
                yield Entry(path, mode, uid, gid, info.size, info.linkname)


def copy_files(source: VolumeHelper, target: VolumeHelper) -> None:
    """Stream the files of ``source``'s volume into ``target``'s (which should be empty),
    chunk by chunk, checking every member on the way.

    Docker names the members after the directory asked for (``v``, ``v/x``), and its
    extraction skips a ``.`` member: a stripped stream would lose the owner and mode of
    the volume's root directory (a PGDATA's 0700, uid 999). So Docker's stream is
    extracted at ``/`` of the target helper, where ``v`` is the volume root, metadata
    included. Podman 4 names them ``""`` and ``/x``, below the mount point, so its stream
    is extracted at the mount point itself (at ``/`` it would land beside the volume).
    Owners, modes, set-id bits, symlinks (dangling ones too), hard links, empty directories
    and extended attributes arrive as the engine wrote them; sparse files arrive dense.
    """
    names = {"source": source.volume, "target": target.volume}

    def failed(step: str) -> Callable[[str], VolumeCopyError]:
        return lambda why: VolumeCopyError(why=f"the engine failed to {step} it ({why})", **names)

    with engine_errors_as(failed("read")):
        stream = source.get_archive()
    try:
        # Reading and writing interleave: an error may come from either end of the stream.
        with engine_errors_as(failed("copy")):
            first, chunks = peek_first_name(stream)
            below_mount_point = first is not None and (first == "" or first.startswith("/"))
            root = "" if below_mount_point else HELPER_MOUNT_POINT.strip("/")
            dest = HELPER_MOUNT_POINT if below_mount_point else "/"
            checked = checked_archive(chunks, root=root, **names)
            target.put_archive(checked, at=dest)
    finally:
        close_stream(stream)


def close_stream(stream: object) -> None:
    """Give an archive stream's connection back, whether or not it was read to the end."""
    close = getattr(stream, "close", None)
    if close is not None:
        close()

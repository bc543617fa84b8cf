"""Copies of Docker volumes: ``clone()``, ``snapshot()`` and ``restore()``.

Everything goes through Docker's archive API on the never-started helper
containers, so nothing is pulled and nothing runs in the volume: the source
helper's ``get_archive("/v")`` is streamed, chunk by chunk, into the target
helper's ``put_archive("/")``. Never the whole volume in memory, never the host
file system.

Why ``put_archive("/")`` and not ``"/v"`` with the first name component stripped:
Docker names the members ``v``, ``v/...`` after the directory asked for, and when it
extracts it skips a ``.`` member, so a stripped stream would lose the owner and mode
of the volume's root directory -- which is the data directory itself when a database
mounts the volume at PGDATA (0700, uid 999). Extracting at ``/`` of a helper whose
volume is also mounted at ``/v`` maps ``v`` onto the volume root, metadata included.
The stream is checked as it passes (every member must stay inside ``v/``), but it is
not re-encoded: owners, modes, set-id bits, symlinks (dangling ones too), hard links,
empty directories and extended attributes arrive as Docker wrote them.

Sparse files are copied with their full content but arrive dense: Docker's archive
API neither writes nor restores holes.

Restoring empties the target by removing the volume and creating it again, with
the same name, driver, options and labels: the archive API can add and overwrite
files, not delete them. So a restore refuses while a container other than the
plugin's own helper still uses the volume.
"""

from __future__ import annotations

import contextlib
import itertools
import posixpath
import tarfile
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import docker.errors

from ._engine import HELPER_MOUNT_POINT, short_reason
from ._errors import DockervolUsageError, VolumeCopyError, VolumeInUseError, VolumeRemovedError
from ._identity import (
    ANONYMOUS_VOLUME_LABEL,
    LABEL_KIND,
    LABEL_NONCE,
    LABEL_PREFIX,
    RunIdentity,
    check_user_labels,
    check_volume_name,
)
from ._tarstream import open_stream, relative_parts
from ._volumes import DockerVolume, NamedVolume

if TYPE_CHECKING:
    from ._factory import VolumeFactory

#: On a clone: the name of the volume it was copied from.
LABEL_CLONE_OF = LABEL_PREFIX + "clone-of"
#: On a snapshot's hidden volume: the name of the volume it was taken of.
LABEL_SNAPSHOT_OF = LABEL_PREFIX + "snapshot-of"

_ROOT = HELPER_MOUNT_POINT.strip("/")  # "v": what get_archive names the volume root
_RUNNING = {"running", "paused", "restarting"}
_BLOCK = tarfile.BLOCKSIZE
_ZERO_BLOCK = bytes(_BLOCK)
_META = {tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK}
_NO_DATA = {
    tarfile.LNKTYPE,
    tarfile.SYMTYPE,
    tarfile.CHRTYPE,
    tarfile.BLKTYPE,
    tarfile.DIRTYPE,
    tarfile.FIFOTYPE,
}
_WITH_DATA = {tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE}
_MAX_META = 1 << 20  # an extended header bigger than this is refused: memory stays bounded


def _factory_of(volume: DockerVolume) -> VolumeFactory:
    factory = volume._factory
    if factory is None:
        raise DockervolUsageError(
            f"volume {volume.name} belongs to no running pytest-dockervol session; "
            "clone volumes made by volume_factory while the session runs"
        )
    return factory


# -- the public objects ------------------------------------------------------------------


class Snapshot:
    """The files of a volume at one moment, kept in a hidden volume (label kind=snapshot).

    ``volume.restore(snapshot)`` or ``snapshot.restore()`` puts them back, as often as
    needed. The hidden volume is removed at the end of the session, or by ``.remove()``.
    """

    kind = "snapshot"

    def __init__(self, source: DockerVolume, storage: NamedVolume) -> None:
        self.source = source
        self.storage = storage
        self.taken_at = time.time()

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
        return clone_volume(self.storage, name=name, labels=labels)

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


# -- clone, snapshot, restore ---------------------------------------------------------------


def clone_volume(
    source: DockerVolume,
    *,
    name: str | None = None,
    labels: dict[str, str] | None = None,
    allow_running: bool = False,
    factory: VolumeFactory | None = None,
) -> NamedVolume:
    """A new named volume with the files of ``source``, registered with the factory."""
    __tracebackhide__ = True
    factory = factory or _factory_of(source)
    if name is not None:
        check_volume_name(name)
    extra = check_user_labels(labels)
    source._check_alive()
    source_labels = _labels_of(source)
    if not allow_running:
        _refuse_running_users(source, "clone")
    kept = {
        key: value
        for key, value in source_labels.items()
        if not key.startswith(LABEL_PREFIX) and key != ANONYMOUS_VOLUME_LABEL
    }
    return _new_copy(
        factory,
        source,
        name=name or factory._next_name(),
        kind="clone",
        labels={**kept, **extra, LABEL_CLONE_OF: source.name},
    )


def take_snapshot(
    source: DockerVolume, *, allow_running: bool = False, factory: VolumeFactory | None = None
) -> Snapshot:
    """Copy ``source`` into a hidden volume labelled kind=snapshot."""
    __tracebackhide__ = True
    factory = factory or _factory_of(source)
    source._check_alive()
    _labels_of(source)  # a volume removed behind the object's back fails here, clearly
    if not allow_running:
        _refuse_running_users(source, "snapshot")
    storage = _new_copy(
        factory,
        source,
        name=check_volume_name(f"{factory._next_name()}-snap"),
        kind="snapshot",
        labels={LABEL_SNAPSHOT_OF: source.name},
    )
    return Snapshot(source, storage)


def restore_volume(target: DockerVolume, snapshot: Snapshot) -> None:
    """Empty ``target`` (remove it, create it again alike) and copy the snapshot in."""
    __tracebackhide__ = True
    if not isinstance(snapshot, Snapshot):
        raise DockervolUsageError(
            f"restore() takes a Snapshot, not {type(snapshot).__name__}; "
            "take one with volume.snapshot()"
        )
    target._check_alive()
    snapshot._check_alive()
    if target.kind == "shared":
        raise DockervolUsageError(
            f"shared volume {target.name} belongs to the whole run and cannot be restored; "
            "restore a clone of it instead (volume.clone())"
        )
    if snapshot.storage.name == target.name:
        raise DockervolUsageError(
            f"volume {target.name} is the snapshot's own storage; restore the volume "
            "the snapshot was taken of"
        )
    engine, identity = target._engine, target._identity
    api = engine.api
    try:
        info = api.inspect_volume(target.name)
    except docker.errors.NotFound:
        raise VolumeRemovedError(target.name) from None
    labels: dict[str, str] = dict(info.get("Labels") or {})
    users = api.containers(all=True, filters={"volume": target.name})
    # Podman labels no anonymous volume: this run's helper anchoring it is the proof, and
    # the volume made again carries the labels Docker would have given it.
    anchored = any(_is_own_helper(c, identity) for c in users)
    if engine.is_podman and target.kind == "anonymous" and not labels and anchored:
        labels = {**identity.labels("anonymous", target._creator), ANONYMOUS_VOLUME_LABEL: ""}
    if not identity.owns(labels):
        raise DockervolUsageError(
            f"volume {target.name} is not labelled as this run's; "
            "only volumes this test run created can be restored"
        )
    foreign = [c for c in users if not _is_own_helper(c, identity)]
    if foreign:
        raise VolumeInUseError(target.name, "restore", _describe(foreign), _STOP_FIRST)
    for helper in users:
        with contextlib.suppress(docker.errors.NotFound):
            api.remove_container(helper["Id"], force=True)
    target._helper_id = None
    try:
        api.remove_volume(target.name)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError:  # a container started since we looked
        users = api.containers(all=True, filters={"volume": target.name})
        if users:
            raise VolumeInUseError(target.name, "restore", _describe(users), _STOP_FIRST) from None
        raise
    nonce = uuid.uuid4().hex
    api.create_volume(
        target.name,
        driver=info.get("Driver") or "local",
        driver_opts=info.get("Options") or {},
        labels={**labels, LABEL_NONCE: nonce},
    )
    target._check_created(engine, target.name, nonce)
    # The local driver deletes the data of a removed volume, unless it mounts a device or
    # a bind (``device`` option): check those, and other drivers, for what they kept.
    keeps_data = info.get("Driver") != "local" or "device" in (info.get("Options") or {})
    if keeps_data and not _is_empty(target):
        raise VolumeCopyError(
            snapshot.name,
            target.name,
            f"the volume still holds files after being created again (its driver "
            f"{info.get('Driver')!r} with options {info.get('Options')} keeps data); "
            "restore works for volumes whose removal deletes their data",
        )
    copy_files(snapshot.storage, target)


_STOP_FIRST = (
    "stop and remove those containers first (container.remove(force=True)), "
    "restore, then start new ones on the volume"
)


def _new_copy(
    factory: VolumeFactory, source: DockerVolume, *, name: str, kind: str, labels: dict[str, str]
) -> NamedVolume:
    """Create, register (right away, so a failed copy leaks nothing), then fill."""
    __tracebackhide__ = True
    copy = factory._create_named_volume(name, kind=kind, labels=labels, volume_cls=NamedVolume)
    factory._adopt(copy, None)
    try:
        copy_files(source, copy)
    except BaseException:
        factory.finalize(copy)
        raise
    return copy


def _labels_of(volume: DockerVolume) -> dict[str, str]:
    try:
        info = volume._engine.api.inspect_volume(volume.name)
    except docker.errors.NotFound:
        raise VolumeRemovedError(volume.name) from None
    return dict(info.get("Labels") or {})


def _is_own_helper(container: dict[str, Any], identity: RunIdentity) -> bool:
    labels = container.get("Labels") or {}
    return identity.owns(labels) and labels.get(LABEL_KIND) == "helper"


def _describe(containers: list[dict[str, Any]]) -> str:
    return "container(s) " + ", ".join(
        f"{c['Names'][0].lstrip('/') if c.get('Names') else c['Id'][:12]} ({c.get('State', '?')})"
        for c in containers
    )


def _refuse_running_users(volume: DockerVolume, action: str) -> None:
    """A copy of a volume a running container writes to (a live database) is inconsistent."""
    users = volume._engine.api.containers(all=True, filters={"volume": volume.name})
    running = [c for c in users if c.get("State") in _RUNNING]
    if running:
        raise VolumeInUseError(
            volume.name,
            action,
            _describe(running),
            "stop them first (container.stop()) so the files are consistent, or pass "
            "allow_running=True to copy a volume that may change while it is copied",
        )


# -- streaming ------------------------------------------------------------------------------


def copy_files(source: DockerVolume, target: DockerVolume) -> None:
    """Stream ``source``'s files into ``target`` (which should be empty), chunk by chunk."""
    __tracebackhide__ = True
    api = target._engine.api
    try:
        stream = source._engine.get_archive(source._helper(), HELPER_MOUNT_POINT)
    except docker.errors.APIError as exc:
        raise VolumeCopyError(
            source.name, target.name, f"the engine refused to read it ({short_reason(exc)})"
        ) from None
    first, chunks = _first_name(stream)
    # Docker names the members after the directory asked for ("v", "v/x"): extracted at
    # "/", "v" is the volume root. Podman 4 names them "" and "/x", below the mount point:
    # extracted there (extracting at "/" would write beside the volume, not into it).
    below_mount_point = first is not None and (first == "" or first.startswith("/"))
    dest, root = (HELPER_MOUNT_POINT, "") if below_mount_point else ("/", _ROOT)
    try:
        api.put_archive(
            target._helper(),
            dest,
            checked_archive(chunks, root=root, source=source.name, target=target.name),
        )
    except docker.errors.APIError as exc:
        raise VolumeCopyError(
            source.name, target.name, f"the engine refused to write it ({short_reason(exc)})"
        ) from None
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()


def _first_name(stream: Iterable[bytes]) -> tuple[str | None, Iterator[bytes]]:
    """The name of the stream's first member (the volume root), and the stream again."""
    chunks = iter(stream)
    seen: list[bytes] = []

    def recording() -> Iterator[bytes]:
        for chunk in chunks:
            seen.append(chunk)
            yield chunk

    try:
        first = open_stream(recording()).next()
    except tarfile.TarError:
        first = None  # checked_archive says what is wrong with the stream
    return (first.name if first is not None else None), itertools.chain(seen, chunks)


def _is_empty(volume: DockerVolume) -> bool:
    """True when the volume holds nothing but its root directory."""
    stream = volume._engine.get_archive(volume._helper(), HELPER_MOUNT_POINT)
    try:
        with open_stream(stream) as tf:
            return all(not relative_parts(m.name, 1) for m in tf)
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()


def _padded(size: int) -> int:
    return -(-size // _BLOCK) * _BLOCK


def _inside(name: str, root: str) -> bool:
    """Whether extracting ``name`` stays in the volume: at ``/`` for a root of ``v``, or at
    the mount point itself for a root of ``""`` (Podman's ``""`` and ``/x`` names)."""
    if ".." in name.split("/"):
        return False
    if not root:
        return True
    if not name or name.startswith("/"):
        return False
    norm = posixpath.normpath(name)
    return norm == root or norm.startswith(root + "/")


def _pax_records(data: bytes) -> dict[str, str]:
    """The ``length key=value\\n`` records of a pax extended header."""
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data) and data[pos] != 0:
        space = data.index(b" ", pos)
        length = int(data[pos:space])
        end = pos + length
        if length <= space - pos or end > len(data) or data[end - 1] != 0x0A:
            raise ValueError("malformed pax record")
        key, sep, value = data[space + 1 : end - 1].partition(b"=")
        if not sep:
            raise ValueError("malformed pax record")
        records[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos = end
    return records


def checked_archive(
    chunks: Iterable[bytes], *, root: str, source: str = "?", target: str = "?"
) -> Iterator[bytes]:
    """Pass a ``get_archive`` tar stream through unchanged, checking each member on the way.

    Every member (and hard-link target) must lie in ``root`` or under ``root/``, so that
    extracting at ``/`` of a helper only writes into the volume mounted at ``/root``.
    A member's header bytes are held back until its name is checked; content passes
    through as it comes. One output piece per input chunk: memory stays bounded by the
    chunk size (plus at most one extended header, itself bounded).
    """

    def fail(why: str) -> VolumeCopyError:
        return VolumeCopyError(source, target, why)

    held = bytearray()  # the current member's header bytes, emitted once it is checked
    unit = bytearray()  # the header block or extended-header data being collected
    unit_size = _BLOCK
    meta_type: bytes | None = None  # set while collecting an extended header's data
    meta_size = 0
    pax: dict[str, str] = {}
    long_name: str | None = None
    long_link: str | None = None
    skip = 0  # content bytes (padding included) to pass through
    ended = False
    for chunk in chunks:
        view = memoryview(chunk)
        out: list[bytes | memoryview] = []
        while view:
            if ended:
                out.append(view)
                break
            if skip:
                n = min(skip, len(view))
                out.append(view[:n])
                view, skip = view[n:], skip - n
                continue
            n = min(unit_size - len(unit), len(view))
            unit += view[:n]
            view = view[n:]
            if len(unit) < unit_size:
                continue
            held += unit
            if meta_type is not None:
                data = bytes(unit[:meta_size])
                unit.clear()
                unit_size, kind, meta_type = _BLOCK, meta_type, None
                try:
                    if kind == tarfile.XHDTYPE:
                        pax.update(_pax_records(data))
                    elif kind == tarfile.XGLTYPE:
                        if {"path", "linkpath", "size"} & set(_pax_records(data)):
                            raise fail("the archive has a global header that renames members")
                    else:
                        text = data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
                        if kind == tarfile.GNUTYPE_LONGNAME:
                            long_name = text
                        else:
                            long_link = text
                except ValueError:
                    raise fail("the archive has a malformed extended header") from None
                continue
            block = bytes(unit)
            unit.clear()
            if block == _ZERO_BLOCK:
                ended = True
                out.append(bytes(held))
                held.clear()
                continue
            try:
                info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
            except tarfile.HeaderError as exc:
                raise fail(f"the archive has a bad header ({exc})") from None
            if info.type in _META:
                if info.size > _MAX_META:
                    raise fail(f"the archive has an extended header of {info.size} bytes")
                meta_type, meta_size = info.type, info.size
                unit_size = _padded(info.size)
                if unit_size == 0:  # an empty extended header: nothing to collect
                    meta_type, unit_size = None, _BLOCK
                continue
            name = pax.get("path", long_name if long_name is not None else info.name)
            link = pax.get("linkpath", long_link if long_link is not None else info.linkname)
            if info.type not in _WITH_DATA and info.type not in _NO_DATA:
                raise fail(f"the archive has the member {name!r} of unsupported type {info.type!r}")
            if not _inside(name, root):
                raise fail(f"the archive has the member {name!r}, outside {root + '/'!r}")
            if info.type == tarfile.LNKTYPE and not _inside(link, root):
                raise fail(f"the archive has a hard link {name!r} to {link!r}, outside {root!r}")
            try:
                size = int(pax["size"]) if "size" in pax else info.size
            except ValueError:
                raise fail(f"the archive gives {name!r} a bad size") from None
            skip = _padded(size) if info.type in _WITH_DATA else 0
            out.append(bytes(held))
            held.clear()
            pax, long_name, long_link = {}, None, None
        if out:
            yield b"".join(out)
    if not ended or skip or held or unit:
        raise fail("the engine's archive stream ended early")

"""Reading a Docker volume's files through its helper's archive API, on Docker and Podman."""

from __future__ import annotations

import re
import stat
import tarfile
from collections.abc import Iterator

import docker.errors

from ._engine import engine_errors_as
from ._errors import VolumeReadError
from ._seeds import check_relative_path
from ._tarstream import iter_tar_members, list_files_in_tar, read_file_from_tar
from ._volume import Entry
from ._volume_ops import VolumeHelper

#: Podman takes an archive path as a glob pattern (and finds no "a*b" even escaped).
_GLOB_CHARS = re.compile(r"[*?\[\\]")
_TYPE_BITS = {tarfile.DIRTYPE: stat.S_IFDIR, tarfile.SYMTYPE: stat.S_IFLNK}


def _archive(helper: VolumeHelper, inner: str, path: str) -> Iterator[bytes]:
    __tracebackhide__ = True
    try:
        return helper.get_archive(inner)
    except docker.errors.NotFound:
        raise VolumeReadError(helper.volume, path, "no such file or directory") from None


def read_file(helper: VolumeHelper, path: str) -> bytes:
    """The content of one regular file of the volume (``path`` relative to its root); an
    engine error, also one in mid-stream, is a one-line ``VolumeReadError``."""
    __tracebackhide__ = True
    with engine_errors_as(lambda why: VolumeReadError(helper.volume, path, why)):
        return _read_file(helper, path)


def _read_file(helper: VolumeHelper, path: str) -> bytes:
    __tracebackhide__ = True
    inner = check_relative_path(path)
    volume = helper.volume
    if helper.engine.is_podman and _GLOB_CHARS.search(inner):
        # Read the nearest directory above whose path is no pattern, and pick the file.
        parts = inner.split("/")
        cut = next(i for i, part in enumerate(parts) if _GLOB_CHARS.search(part))
        stream = _archive(helper, "/".join(parts[:cut]), path)
        within = "/".join(parts[cut:])
        return read_file_from_tar(stream, inner, volume=volume, within=within)
    return read_file_from_tar(_archive(helper, inner, path), inner, volume=volume)


def list_files(helper: VolumeHelper) -> list[str]:
    """Sorted relative paths of the volume's regular files."""
    __tracebackhide__ = True
    with engine_errors_as(lambda why: VolumeReadError(helper.volume, ".", why)):
        return list_files_in_tar(_archive(helper, "", "."), strip_components=1)


def list_entries(helper: VolumeHelper) -> Iterator[Entry]:
    """Every path of the volume with type, mode, owner and size, lazily."""
    # Podman's archives give every member the helper's owner (root), not the file's.
    owners_known = not helper.engine.is_podman
    with engine_errors_as(lambda why: VolumeReadError(helper.volume, ".", why)):
        for path, info in iter_tar_members(_archive(helper, "", ".")):
            mode = _TYPE_BITS.get(info.type, stat.S_IFREG) | info.mode
            uid, gid = (info.uid, info.gid) if owners_known else (None, None)
            yield Entry(path, mode, uid, gid, info.size, info.linkname)

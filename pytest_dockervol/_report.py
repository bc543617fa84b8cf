"""What a failing test's report shows of its volumes: what the container saw."""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Iterator

import docker.errors
import requests.exceptions

from ._errors import DockervolError
from ._tarstream import iter_tar_members
from ._volumes import DockerVolume, HostVolume, Volume

MAX_ENTRIES = 60


def _line(path: str, mode: int, uid: int | str, gid: int | str, size: int, link: str = "") -> str:
    target = f" -> {link}" if link else ""
    return f"{stat.filemode(mode)} {uid:>5}:{gid:<5} {size:>10}  {path}{target}"


def _entries(volume: Volume) -> Iterator[str]:
    if isinstance(volume, DockerVolume):
        # Podman's archives give every member the helper's owner (root), not the file's.
        owners_known = not volume._engine.is_podman
        for path, info in iter_tar_members(volume._get_archive("", ".")):
            kind = {tarfile.DIRTYPE: stat.S_IFDIR, tarfile.SYMTYPE: stat.S_IFLNK}.get(
                info.type, stat.S_IFREG
            )
            uid, gid = (info.uid, info.gid) if owners_known else ("?", "?")
            yield _line(path, kind | info.mode, uid, gid, info.size, info.linkname)
    elif isinstance(volume, HostVolume):
        for directory, dirs, files in os.walk(volume.path):
            dirs.sort()
            for name in sorted(dirs) + sorted(files):
                full = os.path.join(directory, name)
                st = os.lstat(full)
                link = os.readlink(full) if stat.S_ISLNK(st.st_mode) else ""
                rel = os.path.relpath(full, volume.path)
                yield _line(rel, st.st_mode, st.st_uid, st.st_gid, st.st_size, link)


def describe_volume(volume: Volume, limit: int = MAX_ENTRIES) -> str:
    """A bounded ``ls -l``-like listing; never raises (a report must not fail)."""
    lines: list[str] = []
    try:
        for line in _entries(volume):
            if len(lines) == limit:
                lines.append(f"... (listing stopped at {limit} entries)")
                break
            lines.append(line)
    except (
        DockervolError,
        docker.errors.DockerException,
        requests.exceptions.RequestException,
        OSError,
        tarfile.TarError,
    ) as exc:
        lines.append(f"(could not list the volume: {exc})")
    return "\n".join(lines) if lines else "(empty)"

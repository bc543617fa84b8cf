"""Reading the tar streams Docker's ``get_archive`` returns: lazily, one chunk at a time.

A volume can hold gigabytes; nothing here joins a stream in memory.
"""

from __future__ import annotations

import io
import posixpath
import tarfile
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from ._archive import _READ_ERRORS, _StrictTarInfo
from ._errors import VolumeReadError

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer


class _ChunkReader(io.RawIOBase):
    """A read-only file over an iterator of byte chunks, holding at most one chunk."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        super().__init__()
        self._chunks = iter(chunks)
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = memoryview(chunk)
        with memoryview(buffer).cast("B") as view:
            n = min(len(view), len(self._pending))
            view[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


def open_stream(chunks: Iterable[bytes]) -> tarfile.TarFile:
    reader = io.BufferedReader(_ChunkReader(chunks))
    return tarfile.open(fileobj=reader, mode="r|", tarinfo=_StrictTarInfo)


def relative_parts(name: str, strip_components: int) -> list[str]:
    """A member's path below the directory the archive was made of. Docker names members
    after that directory (``v/x``, stripped here); Podman 4 names those of a mount point
    ``/x`` and the mount point itself ``""``, which are relative to it already."""
    parts = [p for p in name.split("/") if p and p != "."]
    if not name or name.startswith("/"):
        return parts
    return parts[strip_components:]


def read_file_from_tar(
    chunks: Iterable[bytes], member: str, *, volume: str, within: str | None = None
) -> bytes:
    """Return the content of `member` from a `get_archive` stream, parsed incrementally.

    The stream is of the file itself, or, with `within` (the file's path below it), of a
    directory above it.
    """
    want = posixpath.basename(member.rstrip("/"))
    try:
        with open_stream(chunks) as tf:
            for m in tf:
                if within is not None:
                    if "/".join(relative_parts(m.name, 1)) != within:
                        continue
                elif posixpath.normpath(m.name) != want:
                    continue
                content = tf.extractfile(m) if m.isreg() else None
                if content is not None:
                    return content.read()
                what = "directory" if m.isdir() else "symbolic link" if m.issym() else ""
                raise VolumeReadError(
                    volume, member, f"is a {what}" if what else "is not a regular file"
                )
    except VolumeReadError:
        raise
    except _READ_ERRORS as e:
        raise VolumeReadError(volume, member, f"unreadable tar stream from Docker ({e})") from e
    raise VolumeReadError(volume, member, "not found")


def list_files_in_tar(chunks: Iterable[bytes], *, strip_components: int = 1) -> list[str]:
    """List the regular files (hard links included) of a `get_archive` stream, sorted.

    The first `strip_components` path components (Docker's top directory) are dropped.
    """
    if strip_components < 0:
        raise ValueError(f"strip_components must be >= 0, not {strip_components}")
    files: list[str] = []
    with open_stream(chunks) as tf:
        for m in tf:
            parts = relative_parts(m.name, strip_components)
            if (m.isreg() or m.islnk()) and parts:
                files.append("/".join(parts))
    return sorted(files)


def iter_tar_members(
    chunks: Iterable[bytes], *, strip_components: int = 1
) -> Iterator[tuple[str, tarfile.TarInfo]]:
    """Yield ``(relative path, header)`` for each member of a `get_archive` stream, lazily
    (content is skipped, never held); the stripped top directory itself is left out."""
    with open_stream(chunks) as tf:
        for m in tf:
            parts = relative_parts(m.name, strip_components)
            if parts:
                yield "/".join(parts), m

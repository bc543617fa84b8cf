"""Every tar the plugin reads, and how it checks them: seed archives on the host, and the
streams Docker's ``get_archive`` returns (read lazily, one chunk at a time: a volume can
hold gigabytes and nothing here joins a stream in memory).

Docker names the members of ``get_archive("/v")`` after the directory asked for (``v``,
``v/x``); Podman 4 names the mount point ``""`` and the rest ``/x``. Readers here accept
both shapes.
"""

from __future__ import annotations

import io
import itertools
import posixpath
import re
import tarfile
import zlib
from collections.abc import Generator, Iterable, Iterator
from typing import TYPE_CHECKING, Literal

from .._errors import SeedSourceError, VolumeCopyError, VolumeReadError, one_line

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

#: What reading a broken or truncated tar (or its compression) can raise.
READ_ERRORS: tuple[type[BaseException], ...] = (tarfile.TarError, EOFError, OSError, zlib.error)
try:  # lzma is optional in some Python builds
    import lzma

    READ_ERRORS += (lzma.LZMAError,)
except ImportError:  # pragma: no cover
    pass

_BLOCK = tarfile.BLOCKSIZE
_ZERO_BLOCK = bytes(_BLOCK)


class StrictTarInfo(tarfile.TarInfo):
    """Makes a truncated or garbled header an error: tarfile would quietly stop there."""

    @classmethod
    def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> StrictTarInfo:
        try:
            return super().frombuf(buf, encoding, errors)
        except tarfile.HeaderError as e:
            if buf == _ZERO_BLOCK:  # the real end-of-archive marker: tarfile handles it
                raise
            reason = "truncated header" if len(buf) < _BLOCK else str(e)
            raise tarfile.ReadError(f"{reason} (truncated or corrupt?)") from None


# -- seed archives on the host ---------------------------------------------------------------


#: One line per decompressor of ``tarfile.open(mode="r:*")``'s failure: ``- method gz: ...``.
_METHOD_FAILURE = re.compile(r"^- method (\w+): \w+\((['\"])(.*)\2\)$", re.MULTILINE)
_METHOD_NAMES = {"tar": "plain tar", "gz": "gzip", "bz2": "bzip2", "xz": "xz"}


def read_failure(e: BaseException, tried: list[tuple[str, str]] | None = None) -> str:
    """Why a tar could not be read, in one line. ``tarfile.open("r:*")`` says it in one
    line per decompressor it tried (``tried``: what each said, where it did not); only the
    causes that say more than "not a gzip file" are kept, after the list of what was tried."""
    if tried is None:
        tried = [(m, why) for m, _q, why in _METHOD_FAILURE.findall(str(e))]
    if not tried:
        return one_line(str(e)) or type(e).__name__
    names = [_METHOD_NAMES.get(method, method) for method, _why in tried]
    causes = [
        f"{name}: {why}"
        for name, (_method, why) in zip(names, tried)
        if not why.startswith(("not a ", "not an "))
    ]
    listed = f"{', '.join(names[:-1])} and {names[-1]}" if len(names) > 1 else names[0]
    return one_line("; ".join([f"tried {listed}", ", ".join(causes)] if causes else [listed]))


def _each_method(path: str) -> list[tuple[str, str]]:
    """What each decompressor says of ``path``, in ``tarfile.open("r:*")``'s order: Python
    3.12 and newer list it in the error, older ones say only "could not be opened"."""
    tried = []
    modes: tuple[tuple[str, Literal["r:gz", "r:bz2", "r:xz", "r:"]], ...] = (
        ("gz", "r:gz"),
        ("bz2", "r:bz2"),
        ("xz", "r:xz"),
        ("tar", "r:"),
    )
    for method, mode in modes:
        try:
            tarfile.open(path, mode).close()
        except READ_ERRORS as e:
            tried.append((method, one_line(str(e)) or type(e).__name__))
        else:
            return []  # it opens now: it changed meanwhile, say what Python said
    return tried


def _unreadable(path: str, e: BaseException) -> SeedSourceError:
    detailed = bool(_METHOD_FAILURE.search(str(e)))
    tried = None if detailed or not isinstance(e, tarfile.ReadError) else _each_method(path)
    return SeedSourceError(
        f"seed source {path!r} is not a readable tar archive ({read_failure(e, tried)}); "
        "pass a directory or an intact .tar, .tar.gz, .tar.bz2 or .tar.xz file"
    )


def archive_members(
    path: str, *, stream: bool
) -> Generator[tuple[tarfile.TarFile, tarfile.TarInfo]]:
    """The members of a seed archive (any compression), each read failure a SeedSourceError.
    ``stream`` reads it front to back once, for the pass that copies the content."""
    try:
        if stream:
            tf = tarfile.open(path, "r|*", tarinfo=StrictTarInfo)  # noqa: SIM115 - closed below
        else:
            tf = tarfile.open(path, "r:*", tarinfo=StrictTarInfo)  # noqa: SIM115 - closed below
    except READ_ERRORS as e:
        raise _unreadable(path, e) from e
    with tf:
        while True:
            try:
                member = tf.next()
            except READ_ERRORS as e:
                raise _unreadable(path, e) from e
            if member is None:
                return
            yield tf, member


# -- get_archive streams --------------------------------------------------------------------


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
    return tarfile.open(fileobj=reader, mode="r|", tarinfo=StrictTarInfo)


def relative_parts(name: str, strip_components: int) -> list[str]:
    """A member's path below the directory the archive was made of: Docker's ``v/x`` is
    stripped here; Podman's ``/x`` (and ``""`` for the mount point) is relative already."""
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
    except READ_ERRORS as e:
        raise VolumeReadError(
            volume, member, f"unreadable tar stream from Docker ({read_failure(e)})"
        ) from e
    raise VolumeReadError(volume, member, "not found")


def iter_tar_members(
    chunks: Iterable[bytes], *, strip_components: int = 1
) -> Iterator[tuple[str, tarfile.TarInfo]]:
    """Yield ``(relative path, header)`` for each member of a `get_archive` stream, lazily
    (content is skipped, never held); the stripped top directory itself is left out."""
    if strip_components < 0:
        raise ValueError(f"strip_components must be >= 0, not {strip_components}")
    with open_stream(chunks) as tf:
        for m in tf:
            parts = relative_parts(m.name, strip_components)
            if parts:
                yield "/".join(parts), m


def list_files_in_tar(chunks: Iterable[bytes], *, strip_components: int = 1) -> list[str]:
    """The regular files (hard links included) of a `get_archive` stream, sorted; the
    first `strip_components` path components (Docker's top directory) are dropped."""
    members = iter_tar_members(chunks, strip_components=strip_components)
    return sorted(path for path, m in members if m.isreg() or m.islnk())


def holds_only_root(chunks: Iterable[bytes]) -> bool:
    """Whether a `get_archive` stream of a volume holds nothing but the volume's root."""
    return next(iter_tar_members(chunks), None) is None


def peek_first_name(chunks: Iterable[bytes]) -> tuple[str | None, Iterator[bytes]]:
    """The name of the stream's first member (the volume root: ``v`` from Docker, ``""``
    from Podman), and the whole stream again, not a byte lost; None if unreadable."""
    source = iter(chunks)
    seen: list[bytes] = []

    def recording() -> Iterator[bytes]:
        for chunk in source:
            seen.append(chunk)
            yield chunk

    try:
        first = open_stream(recording()).next()
    except tarfile.TarError:
        first = None  # checked_archive says what is wrong with the stream
    return (first.name if first is not None else None), itertools.chain(seen, source)


# -- checking a stream as it passes from one volume to another ---------------------------------

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

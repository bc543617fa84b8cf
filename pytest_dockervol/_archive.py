"""Seed plans: validate a seed source up front, then stream it as a tar or write it to disk.

All validation happens in `build_seed_plan`, so a bad seed fails before anything touches a
volume; streaming keeps memory bounded by the chunk size whatever the file sizes.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tarfile
import time
import zlib
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Union

from ._errors import SeedPathError, SeedSourceError

if TYPE_CHECKING:
    pass

_DIR, _FILE, _SYMLINK, _HARDLINK = (
    tarfile.DIRTYPE,
    tarfile.REGTYPE,
    tarfile.SYMTYPE,
    tarfile.LNKTYPE,
)
_ZERO_BLOCK = b"\0" * tarfile.BLOCKSIZE
_SPECIAL = {stat.S_IFIFO: "FIFO", stat.S_IFSOCK: "socket", stat.S_IFCHR: "device file"}
_READ_ERRORS: tuple[type[BaseException], ...] = (tarfile.TarError, EOFError, OSError, zlib.error)
try:  # lzma is optional in some Python builds
    import lzma

    _READ_ERRORS += (lzma.LZMAError,)
except ImportError:  # pragma: no cover
    pass


@dataclass(frozen=True)
class SeedFile:
    """One file's content with optional per-file metadata, usable as a mapping value."""

    content: str | bytes | os.PathLike[str]
    mode: int | None = None


_SeedValue = Union[str, bytes, SeedFile, "os.PathLike[str]"]


def check_relative_path(path: str) -> str:
    """Return the normalized relative POSIX path or raise SeedPathError."""
    if not isinstance(path, str):
        raise SeedPathError(repr(path), "is not a string")
    if not path:
        raise SeedPathError(path, "is empty")
    if "\0" in path:
        raise SeedPathError(path, "contains a NUL byte")
    if "\n" in path or "\r" in path:
        raise SeedPathError(path, "contains a newline")
    if path.startswith("/"):
        raise SeedPathError(path, "is absolute")
    norm = posixpath.normpath(path)
    if norm == ".":
        raise SeedPathError(path, "names the volume root itself, not a path inside it")
    if norm == ".." or norm.startswith("../"):
        raise SeedPathError(path, "escapes the volume")
    return norm


def _check_symlink(name: str, target: str) -> None:
    """Refuse link targets that would point outside the seeded tree once extracted."""
    if not target or "\0" in target or "\n" in target or "\r" in target:
        raise SeedPathError(name, f"is a symbolic link with the invalid target {target!r}")
    if target.startswith("/"):
        raise SeedPathError(name, f"is a symbolic link to the absolute path {target!r}")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
    if resolved == ".." or resolved.startswith("../"):
        raise SeedPathError(name, f"is a symbolic link to {target!r}, which escapes the seed")


def _check_int(name: str, value: int | None, limit: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        raise SeedSourceError(f"{name} must be an int from 0 to {limit:#o}, not {value!r}")


@dataclass
class _Entry:
    """One tar member of the plan; file content comes from `data`, `host_path` or the archive."""

    name: str
    kind: bytes  # a tarfile type: _DIR, _FILE, _SYMLINK or _HARDLINK
    mode: int
    uid: int
    gid: int
    mtime: float
    linkname: str = ""
    data: bytes | None = None
    host_path: str | None = None
    member_index: int = -1  # position in the archive, to find the content in the second pass
    member_name: str = ""
    size: int = 0
    from_archive: bool = False


class _Builder:
    """Collects entries, adding each missing parent directory once, before its children."""

    def __init__(self, dest: str, uid: int | None, gid: int | None, dir_mode: int | None) -> None:
        self.now = int(time.time())
        self.prefix = dest
        self.uid, self.gid, self.dir_mode = uid, gid, dir_mode
        self.entries: list[_Entry] = []
        self.by_name: dict[str, _Entry] = {}  # keyed by the path relative to the seed tree
        parts = dest.split("/") if dest else []
        self.entries += [self._dir("/".join(parts[: i + 1])) for i in range(len(parts))]

    def _dir(self, name: str) -> _Entry:
        mode = 0o755 if self.dir_mode is None else self.dir_mode
        return _Entry(name, _DIR, mode, self.uid or 0, self.gid or 0, self.now)

    def _full(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def add(self, entry: _Entry) -> None:
        """Add `entry`, named relative to the seed tree; refuse conflicting paths."""
        rel = entry.name
        parts = rel.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            found = self.by_name.get(parent)
            if found is None:
                found = self.by_name[parent] = self._dir(self._full(parent))
                self.entries.append(found)
            elif found.kind == _SYMLINK:  # writing through it could land anywhere
                raise SeedPathError(rel, f"lies inside the symbolic link {parent!r}")
            elif found.kind != _DIR:
                raise SeedPathError(rel, f"needs {parent!r} to be a directory, but it is a file")
        existing = self.by_name.get(rel)
        if existing is not None:
            if existing.kind == _DIR and entry.kind == _DIR:  # an archive lists a dir late
                existing.mode, existing.uid, existing.gid = entry.mode, entry.uid, entry.gid
                existing.mtime = entry.mtime
                return
            if existing.kind == _DIR:
                raise SeedPathError(rel, "is a file but also the parent directory of other paths")
            raise SeedPathError(rel, "appears more than once in the seed")
        self.by_name[rel] = entry
        entry.name = self._full(rel)
        if entry.kind == _HARDLINK:
            entry.linkname = self._full(entry.linkname)
        self.entries.append(entry)


def build_seed_plan(
    source: Mapping[str, str | bytes | SeedFile | os.PathLike[str]] | str | os.PathLike[str],
    *,
    dest: str = "",
    uid: int | None = None,
    gid: int | None = None,
    file_mode: int | None = None,
    dir_mode: int | None = None,
) -> SeedPlan:
    """Validate everything up front (no side effects) and return a plan."""
    for name, value, limit in (("uid", uid, 2**31 - 1), ("gid", gid, 2**31 - 1)):
        _check_int(name, value, limit)
    _check_int("file_mode", file_mode, 0o7777)
    _check_int("dir_mode", dir_mode, 0o7777)
    builder = _Builder(check_relative_path(dest) if dest else "", uid, gid, dir_mode)
    archive: str | None = None
    if isinstance(source, Mapping):
        _plan_mapping(source, builder, file_mode)
    elif isinstance(source, (str, os.PathLike)):
        path = os.fsdecode(os.fspath(source))
        if not os.path.lexists(path):
            raise SeedSourceError(f"seed source {path!r} does not exist")
        if os.path.isdir(path):
            _plan_directory(path, "", builder, file_mode)
        elif os.path.isfile(path):
            _plan_archive(path, builder, file_mode)
            archive = path
        else:
            raise SeedSourceError(f"seed source {path!r} is neither a directory nor a file")
    else:
        raise SeedSourceError(
            f"unsupported seed source of type {type(source).__name__}; pass a mapping of "
            "relative paths to contents, a directory, or a tar archive path"
        )
    return SeedPlan(builder.entries, archive=archive, uid=uid, gid=gid)


def _plan_mapping(source: Mapping[str, _SeedValue], builder: _Builder, fmode: int | None) -> None:
    seen: dict[str, str] = {}
    for key in source:
        norm = check_relative_path(key)
        if norm in seen:
            raise SeedPathError(key, f"duplicates seed path {seen[norm]!r} after normalization")
        seen[norm] = key
    for norm in sorted(seen, key=lambda n: n.split("/")):
        key, value = seen[norm], source[seen[norm]]
        mode = 0o644 if fmode is None else fmode
        if isinstance(value, SeedFile):
            _check_int(f"SeedFile.mode of {key!r}", value.mode, 0o7777)
            mode = mode if value.mode is None else value.mode
            value = value.content
        entry = _Entry(norm, _FILE, mode, builder.uid or 0, builder.gid or 0, builder.now)
        if isinstance(value, str):
            entry.data = value.encode("utf-8", "surrogateescape")
        elif isinstance(value, (bytes, bytearray)):
            entry.data = bytes(value)
        elif isinstance(value, os.PathLike):
            entry.host_path = os.fsdecode(os.fspath(value))
            try:
                _open_host_file(entry.host_path).close()
            except SeedSourceError as e:
                raise SeedSourceError(f"seed value for {key!r}: {e}") from None
        else:
            raise SeedSourceError(
                f"seed value for {key!r} has unsupported type {type(value).__name__}; "
                "use str, bytes, os.PathLike (a host file) or SeedFile"
            )
        builder.add(entry)


def _plan_directory(root: str, rel: str, builder: _Builder, fmode: int | None) -> None:
    """Walk `root`/`rel` in sorted order, recording paths and stat info only."""
    here = os.path.join(root, rel) if rel else root
    try:
        with os.scandir(here) as it:
            items = sorted(it, key=lambda e: e.name)
    except OSError as e:
        raise SeedSourceError(f"cannot read seed directory {here!r}: {e.strerror}") from e
    uid, gid = builder.uid or 0, builder.gid or 0
    for item in items:
        name = check_relative_path(f"{rel}/{item.name}" if rel else item.name)
        try:
            st = item.stat(follow_symlinks=False)
            target = os.readlink(item.path) if stat.S_ISLNK(st.st_mode) else ""
        except OSError as e:
            raise SeedSourceError(f"cannot read seed path {item.path!r}: {e.strerror}") from e
        entry = _Entry(name, _FILE, 0o644, uid, gid, int(st.st_mtime))
        if stat.S_ISLNK(st.st_mode):
            _check_symlink(name, target)
            entry.kind, entry.mode, entry.linkname = _SYMLINK, 0o777, target
        elif stat.S_ISDIR(st.st_mode):
            entry.kind, entry.mode = _DIR, 0o755 if builder.dir_mode is None else builder.dir_mode
        elif stat.S_ISREG(st.st_mode):
            if not os.access(item.path, os.R_OK):
                raise SeedSourceError(f"cannot read seed file {item.path!r}: permission denied")
            entry.mode = 0o755 if st.st_mode & 0o111 else 0o644
            entry.mode, entry.host_path = entry.mode if fmode is None else fmode, item.path
        else:
            what = _SPECIAL.get(stat.S_IFMT(st.st_mode), "device file")
            raise SeedSourceError(
                f"seed directory {root!r} contains the {what} {name!r}, which cannot be "
                "seeded; seed from a directory holding only files, directories and symlinks"
            )
        builder.add(entry)
        if entry.kind == _DIR:
            _plan_directory(root, name, builder, fmode)


class _StrictTarInfo(tarfile.TarInfo):
    """Makes a truncated or garbled header an error: tarfile would quietly stop there."""

    @classmethod
    def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> _StrictTarInfo:
        try:
            return super().frombuf(buf, encoding, errors)
        except tarfile.HeaderError as e:
            if buf == _ZERO_BLOCK:  # the real end-of-archive marker: tarfile handles it
                raise
            reason = "truncated header" if len(buf) < tarfile.BLOCKSIZE else str(e)
            raise tarfile.ReadError(f"{reason} (truncated or corrupt?)") from None


def _unreadable(path: str, e: BaseException) -> SeedSourceError:
    return SeedSourceError(
        f"seed source {path!r} is not a readable tar archive: {str(e) or type(e).__name__}; "
        "pass a directory or an intact .tar, .tar.gz, .tar.bz2 or .tar.xz file"
    )


def _open_archive(path: str, *, stream: bool) -> tarfile.TarFile:
    if stream:
        return tarfile.open(path, "r|*", tarinfo=_StrictTarInfo)
    return tarfile.open(path, "r:*", tarinfo=_StrictTarInfo)


def _members(path: str, *, stream: bool) -> Generator[tuple[tarfile.TarFile, tarfile.TarInfo]]:
    """Iterate an archive's members, turning every read failure into SeedSourceError."""
    try:
        tf = _open_archive(path, stream=stream)
    except _READ_ERRORS as e:
        raise _unreadable(path, e) from e
    with tf:
        while True:
            try:
                member = tf.next()
            except _READ_ERRORS as e:
                raise _unreadable(path, e) from e
            if member is None:
                return
            yield tf, member


def _plan_archive(path: str, builder: _Builder, fmode: int | None) -> None:
    """First pass: headers only; the content is streamed later in a second pass."""
    for index, (_tf, m) in enumerate(_members(path, stream=False)):
        if m.isdir() and posixpath.normpath(m.name) == ".":
            continue  # the archive's own root, "./"
        name = check_relative_path(m.name)
        uid = m.uid if builder.uid is None else builder.uid
        gid = m.gid if builder.gid is None else builder.gid
        entry = _Entry(name, _FILE, m.mode & 0o7777, uid, gid, m.mtime, from_archive=True)
        if m.isreg():
            entry.size, entry.member_index, entry.member_name = m.size, index, m.name
        elif m.isdir():
            entry.kind = _DIR
            entry.mode = entry.mode if builder.dir_mode is None else builder.dir_mode
        elif m.issym():
            _check_symlink(name, m.linkname)
            entry.kind, entry.mode, entry.linkname = _SYMLINK, 0o777, m.linkname
        elif m.islnk():
            why = f"is a hard link to {m.linkname!r}, which is not an earlier file in the seed"
            try:
                entry.kind, entry.linkname = _HARDLINK, check_relative_path(m.linkname)
            except SeedPathError:
                raise SeedPathError(name, why) from None
            found = builder.by_name.get(entry.linkname)
            if found is None or found.kind not in (_FILE, _HARDLINK):
                raise SeedPathError(name, why)
        else:
            what = "device file" if m.ischr() or m.isblk() else "FIFO" if m.isfifo() else ""
            raise SeedSourceError(
                f"seed archive {path!r} contains the {what or 'unsupported member'} "
                f"{m.name!r}, which cannot be seeded; remove it from the archive"
            )
        if entry.kind in (_FILE, _HARDLINK) and fmode is not None:
            entry.mode = fmode
        builder.add(entry)


class SeedPlan:
    """A validated seed that can be replayed as a tar stream or into a host directory."""

    def __init__(
        self, entries: list[_Entry], *, archive: str | None, uid: int | None, gid: int | None
    ) -> None:
        self._entries = entries
        self._archive = archive
        self._uid, self._gid = uid, gid

    @property
    def file_count(self) -> int:
        """Regular files (hard links included) the seed creates."""
        return sum(1 for e in self._entries if e.kind in (_FILE, _HARDLINK))

    def __repr__(self) -> str:
        return f"<SeedPlan of {len(self._entries)} entries, {self.file_count} files>"

    def _contents(self, chunk_size: int) -> Iterator[tuple[_Entry, int, Iterator[bytes]]]:
        """Yield entries with content size and pieces; the pieces must be consumed in turn."""
        archive = self._archive
        members = None
        if archive is not None and any(e.member_index >= 0 for e in self._entries):
            members = _members(archive, stream=True)
        numbered = enumerate(members or ())
        try:
            for entry in self._entries:
                if entry.kind != _FILE:
                    yield entry, 0, iter(())
                elif entry.data is not None:
                    data, steps = entry.data, range(0, len(entry.data), chunk_size)
                    yield entry, len(data), (data[i : i + chunk_size] for i in steps)
                elif entry.host_path is not None:
                    with _open_host_file(entry.host_path) as f:
                        size, label = os.fstat(f.fileno()).st_size, f"seed file {f.name!r}"
                        yield entry, size, _read_exact(f, size, chunk_size, label)
                else:
                    tf, m = _find_member(numbered, entry, str(archive))
                    content = tf.extractfile(m)
                    assert content is not None
                    label = f"member {m.name!r} of seed archive {archive!r}"
                    yield entry, m.size, _read_exact(content, m.size, chunk_size, label)
        finally:
            if members is not None:
                members.close()

    def tar_chunks(self, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """Yield an uncompressed PAX tar in chunk_size pieces (the last one may be shorter).

        Small entries are coalesced and big files streamed, so memory stays ~2 * chunk_size.
        """
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, not {chunk_size}")
        buf = bytearray()

        def fill(data: bytes) -> Iterator[bytes]:
            """Append to buf, yielding each time it holds exactly chunk_size bytes."""
            view = memoryview(data)
            while len(buf) + len(view) >= chunk_size:
                take = chunk_size - len(buf)
                buf.extend(view[:take])
                view = view[take:]
                yield bytes(buf)
                buf.clear()
            buf.extend(view)

        total = 0
        for entry, size, pieces in self._contents(chunk_size):
            padding = -size % tarfile.BLOCKSIZE
            header = _header(entry, size)
            yield from fill(header)
            for piece in pieces:
                yield from fill(piece)
            yield from fill(b"\0" * padding)
            total += len(header) + size + padding
        yield from fill(b"\0" * (2 * tarfile.BLOCKSIZE + (-(total + 1024) % tarfile.RECORDSIZE)))
        if buf:
            yield bytes(buf)

    def write_to(self, directory: str | os.PathLike[str]) -> None:
        """Create the planned tree under an existing host directory (a host-mounted volume)."""
        root = os.fspath(directory)
        if not os.path.isdir(root):
            raise SeedSourceError(f"cannot seed into {root!r}: it is not an existing directory")
        self._check_ownership()
        dirs: list[tuple[str, _Entry]] = []  # finished last: their modes may forbid writing
        for entry, _size, pieces in self._contents(1 << 20):
            path = os.path.join(root, *entry.name.split("/"))
            try:
                _make_room(path, entry)
                if entry.kind == _DIR:
                    dirs.append((path, entry))
                    continue
                if entry.kind == _FILE:
                    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
                    with os.fdopen(os.open(path, flags, 0o600), "wb") as f:
                        for piece in pieces:
                            f.write(piece)
                elif entry.kind == _SYMLINK:
                    os.symlink(entry.linkname, path)
                else:
                    target = os.path.join(root, *entry.linkname.split("/"))
                    try:
                        os.link(target, path, follow_symlinks=False)
                        continue  # shares the target's inode, hence its metadata
                    except OSError:  # no hard links on this file system: copy
                        shutil.copyfile(target, path)
                self._finish(path, entry)
            except OSError as e:
                raise SeedSourceError(f"cannot write seed path {path!r}: {e}") from e
        for path, entry in reversed(dirs):
            try:
                self._finish(path, entry)
            except OSError as e:
                raise SeedSourceError(f"cannot set the metadata of {path!r}: {e}") from e

    def _finish(self, path: str, entry: _Entry) -> None:
        """Apply mtime, owner, then mode: chown may clear set-id bits, so chmod comes last."""
        is_link = entry.kind == _SYMLINK
        if not is_link:
            os.utime(path, (entry.mtime, entry.mtime))
        uid = -1 if self._uid is None else self._uid
        gid = -1 if self._gid is None else self._gid
        if entry.from_archive and _is_root():  # keep the archive's owners, as tar does
            uid = entry.uid if uid == -1 and entry.uid != os.geteuid() else uid
            gid = entry.gid if gid == -1 and entry.gid != os.getegid() else gid
        if uid != -1 or gid != -1:
            try:
                os.chown(path, uid, gid, follow_symlinks=False)
            except PermissionError as e:
                raise self._ownership_error() from e
        if not is_link:
            os.chmod(path, entry.mode)

    def _check_ownership(self) -> None:
        """Refuse, before writing anything, an owner this process cannot set."""
        if (self._uid is None and self._gid is None) or _is_root():
            return
        bad_uid = self._uid is not None and self._uid != os.geteuid()
        bad_gid = self._gid is not None and self._gid not in {os.getegid(), *os.getgroups()}
        if bad_uid or bad_gid:
            raise self._ownership_error()

    def _ownership_error(self) -> SeedSourceError:
        given = [f"{k}={v}" for k, v in (("uid", self._uid), ("gid", self._gid)) if v is not None]
        return SeedSourceError(
            f"cannot seed a host directory with {' '.join(given) or 'the archive owners'}: "
            "host volumes can only set ownership when pytest runs as root; "
            "drop uid/gid or run pytest as root"
        )


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _find_member(
    numbered: Iterator[tuple[int, tuple[tarfile.TarFile, tarfile.TarInfo]]],
    entry: _Entry,
    path: str,
) -> tuple[tarfile.TarFile, tarfile.TarInfo]:
    """Advance the second pass to the entry's member, checking it is the one planned."""
    for index, (tf, m) in numbered:
        if index == entry.member_index:
            if (m.name, m.isreg(), m.size) == (entry.member_name, True, entry.size):
                return tf, m
            break
    raise SeedSourceError(f"seed archive {path!r} changed after the seed plan was built")


def _header(entry: _Entry, size: int) -> bytes:
    info = tarfile.TarInfo(entry.name)
    info.type, info.mode, info.mtime = entry.kind, entry.mode, entry.mtime
    info.uid, info.gid, info.size, info.linkname = entry.uid, entry.gid, size, entry.linkname
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _open_host_file(path: str) -> IO[bytes]:
    """Open without blocking (a file swapped for a FIFO would hang) and insist on a file."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        raise SeedSourceError(f"cannot read seed file {path!r}: {e.strerror}") from e
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise SeedSourceError(f"seed file {path!r} is not a regular file")
    return os.fdopen(fd, "rb")


def _read_exact(f: IO[bytes], size: int, chunk_size: int, label: str) -> Iterator[bytes]:
    """Yield exactly `size` bytes: a source that shrinks or grows would corrupt the tar."""
    remaining = size
    try:
        while remaining:
            piece = f.read(min(remaining, chunk_size))
            if not piece:
                break
            remaining -= len(piece)
            yield piece
        grew = not remaining and f.read(1) != b""
    except _READ_ERRORS as e:
        raise SeedSourceError(f"cannot read {label}: {e}") from e
    if remaining or grew:
        raise SeedSourceError(
            f"{label} changed size while being seeded (expected {size} bytes); "
            "do not modify seed files while a volume is being seeded"
        )


def _make_room(path: str, entry: _Entry) -> None:
    """Leave a writable directory for a dir entry, else nothing (never write via a symlink)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISDIR(st.st_mode):
        if entry.kind != _DIR:
            raise SeedSourceError(f"cannot seed {entry.name!r}: {path!r} is a directory")
        if st.st_mode & 0o700 != 0o700:
            os.chmod(path, stat.S_IMODE(st.st_mode) | 0o700)
        return
    if st is not None:
        os.unlink(path)
    if entry.kind == _DIR:
        os.mkdir(path, 0o700)

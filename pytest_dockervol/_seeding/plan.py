"""A checked seed plan: the entries a seed creates, written out as a tar or into a directory.

Plans are built (and every rule checked) by ``_seeds.build_seed_plan`` before anything is
written; this module only replays them. Streaming keeps memory bounded by the chunk size
whatever the file sizes: file contents are read when written, never planned into memory.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from .._errors import SeedPathError, SeedSourceError, SeedWriteError
from .hostfs import HostTree, UnsafePathError, write_all
from .tarstream import READ_ERRORS, archive_members

DIR, FILE, SYMLINK, HARDLINK = tarfile.DIRTYPE, tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE


@dataclass
class PlanEntry:
    """One tar member of the plan; file content comes from `data`, `host_path` or the archive."""

    name: str
    kind: bytes  # a tarfile type: DIR, FILE, SYMLINK or HARDLINK
    mode: int
    uid: int
    gid: int
    mtime: float
    linkname: str = ""
    data: bytes | None = None
    host_path: str | None = None
    host_root: str | None = None  # a seed directory's root: host_path is opened from it
    member_index: int = -1  # position in the archive, to find the content in the second pass
    member_name: str = ""
    size: int = 0
    from_archive: bool = False


class PlanBuilder:
    """Collects entries, adding each missing parent directory once, before its children."""

    def __init__(self, dest: str, uid: int | None, gid: int | None, dir_mode: int | None) -> None:
        self.now = int(time.time())
        self.prefix = dest
        self.uid, self.gid, self.dir_mode = uid, gid, dir_mode
        self.entries: list[PlanEntry] = []
        self.by_name: dict[str, PlanEntry] = {}  # keyed by the path relative to the seed tree
        parts = dest.split("/") if dest else []
        self.entries += [self.directory("/".join(parts[: i + 1])) for i in range(len(parts))]

    def directory(self, name: str) -> PlanEntry:
        """A directory entry with the seed's directory mode and owner."""
        mode = 0o755 if self.dir_mode is None else self.dir_mode
        return PlanEntry(name, DIR, mode, self.uid or 0, self.gid or 0, self.now)

    def _full(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def add(self, entry: PlanEntry) -> None:
        """Add `entry`, named relative to the seed tree; refuse conflicting paths."""
        rel = entry.name
        parts = rel.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            found = self.by_name.get(parent)
            if found is None:
                found = self.by_name[parent] = self.directory(self._full(parent))
                self.entries.append(found)
            elif found.kind == SYMLINK:  # writing through it could land anywhere
                raise SeedPathError(rel, f"lies inside the symbolic link {parent!r}")
            elif found.kind != DIR:
                raise SeedPathError(rel, f"needs {parent!r} to be a directory, but it is a file")
        existing = self.by_name.get(rel)
        if existing is not None:
            if existing.kind == DIR and entry.kind == DIR:  # an archive lists a dir late
                existing.mode, existing.uid, existing.gid = entry.mode, entry.uid, entry.gid
                existing.mtime = entry.mtime
                return
            if existing.kind == DIR:
                raise SeedPathError(rel, "is a file but also the parent directory of other paths")
            raise SeedPathError(rel, "appears more than once in the seed")
        self.by_name[rel] = entry
        entry.name = self._full(rel)
        if entry.kind == HARDLINK:
            entry.linkname = self._full(entry.linkname)
        self.entries.append(entry)

    def plan(self, archive: str | None) -> SeedPlan:
        return SeedPlan(self.entries, archive=archive, uid=self.uid, gid=self.gid)


class SeedPlan:
    """A validated seed that can be replayed as a tar stream or into a host directory."""

    def __init__(
        self, entries: list[PlanEntry], *, archive: str | None, uid: int | None, gid: int | None
    ) -> None:
        self._entries = entries
        self._archive = archive
        self._uid, self._gid = uid, gid

    @property
    def file_count(self) -> int:
        """Regular files (hard links included) the seed creates."""
        return sum(1 for e in self._entries if e.kind in (FILE, HARDLINK))

    def __repr__(self) -> str:
        return f"<SeedPlan of {len(self._entries)} entries, {self.file_count} files>"

    def contents(
        self, chunk_size: int = 1 << 20
    ) -> Iterator[tuple[PlanEntry, int, Iterator[bytes]]]:
        """Yield entries with content size and pieces; the pieces must be consumed in turn."""
        archive = self._archive
        members = None
        if archive is not None and any(e.member_index >= 0 for e in self._entries):
            members = archive_members(archive, stream=True)
        numbered = enumerate(members or ())
        trees: dict[str, HostTree] = {}  # a seed directory's, opened once for all its files
        try:
            for entry in self._entries:
                if entry.kind != FILE:
                    yield entry, 0, iter(())
                elif entry.data is not None:
                    data, steps = entry.data, range(0, len(entry.data), chunk_size)
                    yield entry, len(data), (data[i : i + chunk_size] for i in steps)
                elif entry.host_path is not None:
                    tree = None if entry.host_root is None else _tree(trees, entry.host_root)
                    with open_host_file(entry.host_path, within=tree) as f:
                        size, label = os.fstat(f.fileno()).st_size, f"seed file {f.name!r}"
                        yield entry, size, _read_exact(f, size, chunk_size, label)
                else:
                    tf, m = _find_member(numbered, entry, str(archive))
                    content = tf.extractfile(m)
                    assert content is not None
                    label = f"member {m.name!r} of seed archive {archive!r}"
                    yield entry, m.size, _read_exact(content, m.size, chunk_size, label)
        finally:
            for tree in trees.values():
                tree.close()
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
        for entry, size, pieces in self.contents(chunk_size):
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

    def write_to(self, directory: str | os.PathLike[str], *, volume: str = "") -> None:
        """Create the planned tree under an existing host directory (a host volume, or a
        Docker volume's directory), through descriptors only (``_hostfs``): a container
        that plants links while this runs makes it fail, never write elsewhere."""
        root = os.fspath(directory)
        if not os.path.isdir(root):
            raise SeedSourceError(f"cannot seed into {root!r}: it is not an existing directory")
        self._check_ownership()
        try:
            tree = HostTree(root)
        except OSError as e:
            raise SeedSourceError(f"cannot seed into {root!r}: {e.strerror}") from None
        with tree:
            self._write_tree(tree, volume or root)

    def _write_tree(self, tree: HostTree, volume: str) -> None:
        dirs: list[PlanEntry] = []  # finished last: their modes may forbid writing
        for entry, _size, pieces in self.contents():
            with _write_errors(volume, entry.name):
                if entry.kind == DIR:
                    tree.make_directory(entry.name)
                    dirs.append(entry)
                elif entry.kind == FILE:
                    fd = tree.create_file(entry.name)
                    try:
                        for piece in pieces:
                            write_all(fd, piece)
                        self._finish(entry, fd=fd)
                    finally:
                        os.close(fd)
                elif entry.kind == SYMLINK:
                    tree.remove_non_directory(entry.name)
                    parent, name = tree.parent_of(entry.name)
                    os.symlink(entry.linkname, name, dir_fd=parent)
                    self._finish(entry, at=(parent, name))
                else:
                    self._hard_link(tree, entry)
        for entry in reversed(dirs):
            with _write_errors(volume, entry.name):
                self._finish(entry, fd=tree.directory(entry.name))

    def _hard_link(self, tree: HostTree, entry: PlanEntry) -> None:
        """A hard link shares its target's inode (hence metadata); copied where the file
        system has no hard links."""
        tree.remove_non_directory(entry.name)
        parent, name = tree.parent_of(entry.name)
        target_parent, target_name = tree.parent_of(entry.linkname)
        try:
            os.link(
                target_name,
                name,
                src_dir_fd=target_parent,
                dst_dir_fd=parent,
                follow_symlinks=False,
            )
            return
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOTSUP):
                raise
        source = tree.open_file(entry.linkname)
        try:
            target = tree.create_file(entry.name)
            try:
                while piece := os.read(source, 1 << 20):
                    write_all(target, piece)
                os.fchmod(target, stat.S_IMODE(os.fstat(source).st_mode))
            finally:
                os.close(target)
        finally:
            os.close(source)

    def _finish(
        self, entry: PlanEntry, *, fd: int | None = None, at: tuple[int, str] | None = None
    ) -> None:
        """Apply mtime, owner, then mode (chown may clear set-id bits, so chmod comes
        last), on an open descriptor, or on a link by name in its directory."""
        if fd is not None:
            os.utime(fd, (entry.mtime, entry.mtime))
        uid = -1 if self._uid is None else self._uid
        gid = -1 if self._gid is None else self._gid
        if entry.from_archive and _is_root():  # keep the archive's owners, as tar does
            uid = entry.uid if uid == -1 and entry.uid != os.geteuid() else uid
            gid = entry.gid if gid == -1 and entry.gid != os.getegid() else gid
        if uid != -1 or gid != -1:
            try:
                if fd is not None:
                    os.fchown(fd, uid, gid)
                elif at is not None:
                    os.chown(at[1], uid, gid, dir_fd=at[0], follow_symlinks=False)
            except PermissionError as e:
                raise self._ownership_error() from e
        if fd is not None:
            os.fchmod(fd, entry.mode)

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


def open_host_file(path: str, *, within: HostTree | None = None) -> IO[bytes]:
    """Open without blocking (a file swapped for a FIFO would hang) and insist on a file.

    ``within``: the seed directory ``path`` was found in, which a container may be writing;
    the file is then opened from it without following links (``_hostfs``)."""
    try:
        if within is not None:
            fd = within.open_file(os.path.relpath(path, within.root).replace(os.sep, "/"))
        else:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except UnsafePathError as e:
        raise SeedSourceError(f"seed file {path!r}: {e.why} (it changed after the check)") from None
    except OSError as e:
        raise SeedSourceError(f"cannot read seed file {path!r}: {e.strerror}") from e
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise SeedSourceError(f"seed file {path!r} is not a regular file")
    return os.fdopen(fd, "rb")


def _tree(trees: dict[str, HostTree], root: str) -> HostTree:
    """The open tree of seed directory ``root``, opened on first use."""
    if root not in trees:
        try:
            trees[root] = HostTree(root)
        except OSError as e:
            raise SeedSourceError(f"cannot read seed directory {root!r}: {e.strerror}") from e
    return trees[root]


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _find_member(
    numbered: Iterator[tuple[int, tuple[tarfile.TarFile, tarfile.TarInfo]]],
    entry: PlanEntry,
    path: str,
) -> tuple[tarfile.TarFile, tarfile.TarInfo]:
    """Advance the second pass to the entry's member, checking it is the one planned."""
    for index, (tf, m) in numbered:
        if index == entry.member_index:
            if (m.name, m.isreg(), m.size) == (entry.member_name, True, entry.size):
                return tf, m
            break
    raise SeedSourceError(f"seed archive {path!r} changed after the seed plan was built")


def _header(entry: PlanEntry, size: int) -> bytes:
    info = tarfile.TarInfo(entry.name)
    info.type, info.mode, info.mtime = entry.kind, entry.mode, entry.mtime
    info.uid, info.gid, info.size, info.linkname = entry.uid, entry.gid, size, entry.linkname
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


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
    except READ_ERRORS as e:
        raise SeedSourceError(f"cannot read {label}: {e}") from e
    if remaining or grew:
        raise SeedSourceError(
            f"{label} changed size while being seeded (expected {size} bytes); "
            "do not modify seed files while a volume is being seeded"
        )


@contextlib.contextmanager
def _write_errors(volume: str, path: str) -> Iterator[None]:
    """A failed write as one ``SeedWriteError`` line, the cause first: ``No space left on
    device (writing 'a/b')``, or the link a container planted."""
    __tracebackhide__ = True
    try:
        yield
    except UnsafePathError as e:
        raise SeedWriteError(volume, f"{e}; a running container may be changing it") from None
    except OSError as e:
        raise SeedWriteError(volume, f"{e.strerror or e} (writing {path!r})") from None


def plan_digest(plan: SeedPlan) -> str:
    """A digest of everything the plan writes: paths, types, modes, owners, link targets and
    contents (not times): two plans with one digest leave the same files."""
    digest = hashlib.sha256()
    for entry, size, pieces in plan.contents():
        fields = (entry.name, entry.kind.decode(), oct(entry.mode), entry.uid, entry.gid)
        digest.update(repr((*fields, entry.linkname, size)).encode())
        for piece in pieces:
            digest.update(piece)
    return digest.hexdigest()

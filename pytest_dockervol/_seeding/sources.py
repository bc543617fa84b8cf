"""Seed sources and the path rules: a mapping, a host directory or a tar archive, checked in
full and turned into a ``SeedPlan`` before anything touches a volume.

Nothing here writes: a refused seed leaves every volume as it was.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Union

from .._errors import SeedPathError, SeedSourceError, short_repr
from .plan import DIR, FILE, HARDLINK, SYMLINK, PlanBuilder, PlanEntry, SeedPlan, open_host_file
from .tarstream import archive_members

_SPECIAL = {stat.S_IFIFO: "FIFO", stat.S_IFSOCK: "socket", stat.S_IFCHR: "device file"}
#: The longest file name Linux allows, in bytes (UTF-8).
MAX_NAME_BYTES = 255
#: The longest path in a volume (``dest=`` included) and link target, in bytes (UTF-8):
#: the kernel's 4,096-byte ``PATH_MAX`` counts the mount point a container sees it below,
#: so this leaves room for one of up to 95 bytes (the plugin's helper uses ``/v/``).
MAX_PATH_BYTES = 4000
_NAME_FIX = f"shorten every name in it to at most {MAX_NAME_BYTES} bytes (UTF-8), Linux's limit"
_PATH_FIX = (
    f"keep paths (dest= included) and link targets to at most {MAX_PATH_BYTES:,} bytes "
    "(UTF-8), so they fit the kernel's 4,096-byte path limit below a mount point"
)


@dataclass(frozen=True)
class SeedFile:
    """One file's content with optional per-file metadata, usable as a mapping value."""

    content: str | bytes | os.PathLike[str]
    mode: int | None = None


#: A mapping seed: relative POSIX paths to contents (a host file by its path).
SeedMapping = Mapping[str, Union[str, bytes, SeedFile, "os.PathLike[str]"]]
#: What becomes a plan: a mapping, or the path of a host directory or tar archive.
PlanSource = Union[SeedMapping, str, "os.PathLike[str]"]


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
    _check_size(path, norm)
    return norm


def _utf8_size(path: str, text: str) -> int:
    """The bytes ``text`` takes on disk (undecodable bytes of host names count as one)."""
    try:
        return len(text.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError as e:
        bad = e.object[e.start : e.end]
        raise SeedPathError(
            path,
            f"is not valid Unicode (it holds the lone surrogate {bad!r})",
            "use text that encodes to UTF-8 (names from os.fsdecode() are fine)",
        ) from None


def _check_size(path: str, text: str, *, link: bool = False, dest: str = "") -> None:
    """Refuse what no file system takes, before anything is written: a name over 255
    bytes, a path over 4,000. ``text`` is ``path`` itself, or its ``link`` target."""
    lead = "is a symbolic link whose target " if link else ""
    for name in text.split("/"):
        size = _utf8_size(path, name)
        if size > MAX_NAME_BYTES:
            why = f"{lead}has a {size:,}-byte name {short_repr(name)}"
            raise SeedPathError(path, why, _NAME_FIX)
    size = _utf8_size(path, text)
    if size > MAX_PATH_BYTES:
        tail = f" with dest={short_repr(dest)} in front" if dest else ""
        raise SeedPathError(path, f"{lead}is {size:,} bytes long{tail}", _PATH_FIX)


def _check_plan_paths(entries: list[PlanEntry], dest: str) -> None:
    """Each path as the volume will hold it, ``dest`` prefixed: within the length limits."""
    if not dest:
        return  # every path was checked alone already
    for entry in entries:
        _check_size(entry.name, entry.name, dest=dest)


def _check_symlink(name: str, target: str) -> None:
    """Refuse link targets that would point outside the seeded tree once extracted."""
    shown = short_repr(target)
    if not target or "\0" in target or "\n" in target or "\r" in target:
        raise SeedPathError(name, f"is a symbolic link with the invalid target {shown}")
    if target.startswith("/"):
        raise SeedPathError(name, f"is a symbolic link to the absolute path {shown}")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
    if resolved == ".." or resolved.startswith("../"):
        raise SeedPathError(name, f"is a symbolic link to {shown}, which escapes the seed")
    _check_size(name, target, link=True)


def _check_int(name: str, value: int | None, limit: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        raise SeedSourceError(f"{name} must be an int from 0 to {limit:#o}, not {value!r}")


@dataclass(frozen=True)
class SeedOptions:
    """Where a seed lands and whom it belongs to: ``volume.seed(source, dest=..., uid=...)``
    names them once here, for every path a seed takes into a plan."""

    dest: str = ""  #: a relative directory inside the volume
    uid: int | None = None  #: owner of everything written (default: as the source says)
    gid: int | None = None
    file_mode: int | None = None  #: permission bits of every file
    dir_mode: int | None = None  #: permission bits of every directory

    @property
    def given(self) -> bool:
        """Whether any option differs from its default."""
        return self != NO_OPTIONS

    def checked_dest(self) -> str:
        """``dest`` checked, before anything is planned.

        Raises:
            SeedSourceError: an owner or mode out of range.
            SeedPathError: ``dest`` leaves the volume.
        """
        for name, value, limit in (("uid", self.uid, 2**31 - 1), ("gid", self.gid, 2**31 - 1)):
            _check_int(name, value, limit)
        _check_int("file_mode", self.file_mode, 0o7777)
        _check_int("dir_mode", self.dir_mode, 0o7777)
        return check_relative_path(self.dest) if self.dest else ""


NO_OPTIONS = SeedOptions()


def build_seed_plan(source: PlanSource, options: SeedOptions = NO_OPTIONS) -> SeedPlan:
    """Validate everything up front (no side effects) and return a plan.

    Raises:
        SeedSourceError, SeedPathError: the source or an option cannot be used.
    """
    builder = PlanBuilder(options.checked_dest(), options.uid, options.gid, options.dir_mode)
    archive = _plan(source, builder, options.file_mode)
    _check_plan_paths(builder.entries, builder.prefix)
    return builder.plan(archive=archive)


def _plan(source: PlanSource, builder: PlanBuilder, file_mode: int | None) -> str | None:
    """Plan ``source`` into ``builder``; the archive to read the contents from, if any."""
    if isinstance(source, Mapping):
        _plan_mapping(source, builder, file_mode)
        return None
    if not isinstance(source, (str, os.PathLike)):
        raise SeedSourceError(
            f"unsupported seed source of type {type(source).__name__}; pass a mapping of "
            "relative paths to contents, a directory, or a tar archive path"
        )
    path = os.fsdecode(os.fspath(source))
    if not os.path.lexists(path):
        raise SeedSourceError(f"seed source {path!r} does not exist")
    if os.path.isdir(path):
        _plan_directory(path, "", builder, file_mode)
        return None
    if os.path.isfile(path):
        _plan_archive(path, builder, file_mode)
        return path
    raise SeedSourceError(f"seed source {path!r} is neither a directory nor a file")


def _plan_mapping(source: SeedMapping, builder: PlanBuilder, fmode: int | None) -> None:
    seen: dict[str, str] = {}
    for key in source:
        norm = check_relative_path(key)
        if norm in seen:
            why = f"duplicates seed path {short_repr(seen[norm])} after normalization"
            raise SeedPathError(key, why)
        seen[norm] = key
    for norm in sorted(seen, key=lambda n: n.split("/")):
        key, value = seen[norm], source[seen[norm]]
        mode = 0o644 if fmode is None else fmode
        if isinstance(value, SeedFile):
            _check_int(f"SeedFile.mode of {key!r}", value.mode, 0o7777)
            mode = mode if value.mode is None else value.mode
            value = value.content
        entry = PlanEntry(norm, FILE, mode, builder.uid or 0, builder.gid or 0, builder.now)
        if isinstance(value, str):
            entry.data = value.encode("utf-8", "surrogateescape")
        elif isinstance(value, (bytes, bytearray)):
            entry.data = bytes(value)
        elif isinstance(value, os.PathLike):
            entry.host_path = os.fsdecode(os.fspath(value))
            try:
                open_host_file(entry.host_path).close()
            except SeedSourceError as e:
                raise SeedSourceError(f"seed value for {key!r}: {e}") from None
        else:
            raise SeedSourceError(
                f"seed value for {key!r} has unsupported type {type(value).__name__}; "
                "use str, bytes, os.PathLike (a host file) or SeedFile"
            )
        builder.add(entry)


def _plan_directory(root: str, rel: str, builder: PlanBuilder, fmode: int | None) -> None:
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
        entry = PlanEntry(name, FILE, 0o644, uid, gid, int(st.st_mtime))
        if stat.S_ISLNK(st.st_mode):
            _check_symlink(name, target)
            entry.kind, entry.mode, entry.linkname = SYMLINK, 0o777, target
        elif stat.S_ISDIR(st.st_mode):
            entry.kind, entry.mode = DIR, 0o755 if builder.dir_mode is None else builder.dir_mode
        elif stat.S_ISREG(st.st_mode):
            if not os.access(item.path, os.R_OK):
                raise SeedSourceError(f"cannot read seed file {item.path!r}: permission denied")
            entry.mode = 0o755 if st.st_mode & 0o111 else 0o644
            entry.mode, entry.host_path = entry.mode if fmode is None else fmode, item.path
            entry.host_root = root  # read later from here, never through a link
        else:
            what = _SPECIAL.get(stat.S_IFMT(st.st_mode), "device file")
            raise SeedSourceError(
                f"seed directory {root!r} contains the {what} {short_repr(name)}, which cannot be "
                "seeded; seed from a directory holding only files, directories and symlinks"
            )
        builder.add(entry)
        if entry.kind == DIR:
            _plan_directory(root, name, builder, fmode)


def _plan_archive(path: str, builder: PlanBuilder, fmode: int | None) -> None:
    """First pass: headers only; the content is streamed later in a second pass."""
    for index, (_tf, m) in enumerate(archive_members(path, stream=False)):
        if m.isdir() and posixpath.normpath(m.name) == ".":
            continue  # the archive's own root, "./"
        name = check_relative_path(m.name)
        uid = m.uid if builder.uid is None else builder.uid
        gid = m.gid if builder.gid is None else builder.gid
        entry = PlanEntry(name, FILE, m.mode & 0o7777, uid, gid, m.mtime, from_archive=True)
        if m.isreg():
            entry.size, entry.member_index, entry.member_name = m.size, index, m.name
        elif m.isdir():
            entry.kind = DIR
            entry.mode = entry.mode if builder.dir_mode is None else builder.dir_mode
        elif m.issym():
            _check_symlink(name, m.linkname)
            entry.kind, entry.mode, entry.linkname = SYMLINK, 0o777, m.linkname
        elif m.islnk():
            why = f"is a hard link to {short_repr(m.linkname)}, which is not an earlier file"
            try:
                entry.kind, entry.linkname = HARDLINK, check_relative_path(m.linkname)
            except SeedPathError:
                raise SeedPathError(name, why) from None
            found = builder.by_name.get(entry.linkname)
            if found is None or found.kind not in (FILE, HARDLINK):
                raise SeedPathError(name, why)
        else:
            what = "device file" if m.ischr() or m.isblk() else "FIFO" if m.isfifo() else ""
            raise SeedSourceError(
                f"seed archive {path!r} contains the {what or 'unsupported member'} "
                f"{short_repr(m.name)}, which cannot be seeded; remove it from the archive"
            )
        if entry.kind in (FILE, HARDLINK) and fmode is not None:
            entry.mode = fmode
        builder.add(entry)

"""Paths on this machine that a container may change at the same time, opened safely.

A host volume, or a Docker volume written directly, is a directory that a running
container can rewrite while the plugin works in it: swap a directory for a symbolic link
to ``/etc`` between two system calls, say. So no path string below the root is ever
resolved by the kernel in one go. Every path is opened one component at a time from the
descriptor of the directory above it, with ``O_NOFOLLOW`` (and ``O_DIRECTORY`` for
directories), and files are created with ``O_EXCL``, the way ``shutil.rmtree`` defends
against symlink attacks. A link planted anywhere, at any moment, then makes the call fail
with ``UnsafePathError``; it never leads outside the root.

The races this closes, by name:

- *swap a parent for a link* between the check and the write: every component is opened
  with ``O_NOFOLLOW``, so the kernel refuses the link at the moment of use;
- *swap a parent after it was opened*: the descriptor still names the directory that was
  opened (inside the root, a bind mount cannot be left by ``rename``); if that directory
  was deleted meanwhile, creating in it fails with ``ENOENT``;
- *plant a file or a link at the name being created*: ``O_EXCL`` refuses to open what
  exists, links included, and the plugin removes it by name (``unlink`` never follows) and
  tries once more;
- *swap a file for a FIFO* before a read: files are opened ``O_NONBLOCK`` and must be
  regular files by ``fstat`` of the open descriptor.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections import OrderedDict
from dataclasses import dataclass

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
#: Directory descriptors kept open while a tree is written (well under the usual 1,024).
_OPEN_DIRECTORIES = 128


@dataclass(eq=False)
class UnsafePathError(Exception):
    """A path under the root is, or became, something the plugin will not go through."""

    path: str
    why: str

    def __str__(self) -> str:
        return f"{self.path!r} {self.why}"


def _why(parent: int, name: str, exc: OSError) -> str:
    """Words for a component that could not be opened as a directory."""
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except OSError:
        return f"disappeared while the plugin used it ({exc.strerror})"
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link, which the plugin never follows inside a volume"
    if not stat.S_ISDIR(st.st_mode):
        return "is not a directory"
    return f"cannot be opened ({exc.strerror})"


class HostTree:
    """A directory on this machine, worked in through descriptors only.

    ``root`` itself is trusted (the plugin made it, the user named it, or the engine
    reported it); everything below it is not. Directory descriptors are cached by path,
    so writing many files into one directory walks to it once.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.fspath(root)
        self._root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._open: OrderedDict[str, int] = OrderedDict()

    def __enter__(self) -> HostTree:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        for fd in self._open.values():
            os.close(fd)
        self._open.clear()
        os.close(self._root_fd)

    # -- directories ------------------------------------------------------------------

    def directory(self, path: str, *, create: bool = False) -> int:
        """The descriptor of directory ``path`` (relative, "" for the root); owned by the
        tree, valid until the tree closes or evicts it. ``create`` makes missing ones 0700.
        """
        if not path:
            return self._root_fd
        fd = self._open.get(path)
        if fd is not None:
            self._open.move_to_end(path)
            return fd
        head, _, name = path.rpartition("/")
        fd = self._step(self.directory(head, create=create), name, path, create=create)
        self._open[path] = fd
        if len(self._open) > _OPEN_DIRECTORIES:
            os.close(self._open.popitem(last=False)[1])
        return fd

    def _step(self, parent: int, name: str, path: str, *, create: bool) -> int:
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            raise UnsafePathError(path, _why(parent, name, exc)) from None
        # Made by someone else meanwhile? The open below decides what it is.
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o700, dir_fd=parent)
        return self._step(parent, name, path, create=False)

    def forget(self, path: str) -> None:
        """Drop cached descriptors at or below ``path`` (it is being replaced)."""
        for cached in [p for p in self._open if p == path or p.startswith(path + "/")]:
            os.close(self._open.pop(cached))

    def parent_of(self, path: str) -> tuple[int, str]:
        """The descriptor of ``path``'s directory (which must exist) and its last component."""
        head, _, name = path.rpartition("/")
        return self.directory(head), name

    # -- entries ----------------------------------------------------------------------

    def make_directory(self, path: str) -> None:
        """Leave a writable directory at ``path``, replacing a file or link that is there
        (never following it)."""
        parent, name = self.parent_of(path)
        for attempt in range(2):
            try:
                fd = self.directory(path, create=True)
            except UnsafePathError:
                if attempt:
                    raise
                self.forget(path)
                os.unlink(name, dir_fd=parent)  # a file or link, never followed
                continue
            mode = os.fstat(fd).st_mode
            if mode & 0o700 != 0o700:
                os.fchmod(fd, stat.S_IMODE(mode) | 0o700)
            return

    def create_file(self, path: str) -> int:
        """A new regular file at ``path`` opened for writing (the caller closes it); a file
        or link already there is removed first, never followed; a directory is refused."""
        parent, name = self.parent_of(path)
        for attempt in range(2):
            try:
                return os.open(name, _NEW_FILE_FLAGS, 0o600, dir_fd=parent)
            except FileExistsError:
                if attempt:
                    raise UnsafePathError(path, "was created again while being seeded") from None
                self.remove_non_directory(path)
        raise AssertionError("unreachable")

    def remove_non_directory(self, path: str) -> None:
        """Remove what is at ``path`` unless it is a directory (refused); absent is fine."""
        parent, name = self.parent_of(path)
        try:
            os.unlink(name, dir_fd=parent)
        except FileNotFoundError:
            pass
        except IsADirectoryError:
            raise UnsafePathError(path, "is a directory") from None
        except OSError as exc:  # EPERM: Linux's answer to unlink() of a directory
            if exc.errno == errno.EPERM and self._is_directory(parent, name):
                raise UnsafePathError(path, "is a directory") from None
            raise

    @staticmethod
    def _is_directory(parent: int, name: str) -> bool:
        try:
            return stat.S_ISDIR(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode)
        except OSError:
            return False

    def open_file(self, path: str) -> int:
        """``path`` opened for reading; it must be a regular file (the caller closes it)."""
        parent, name = self.parent_of(path)
        try:
            fd = os.open(name, _READ_FLAGS, dir_fd=parent)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafePathError(path, _why(parent, name, exc)) from None
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            kind = "a directory" if self._is_directory(parent, name) else "not a regular file"
            raise UnsafePathError(path, f"is {kind}")
        return fd

    def read_file(self, path: str) -> bytes:
        """The content of the regular file at ``path``."""
        fd = self.open_file(path)
        with open(fd, "rb", closefd=True) as f:
            return f.read()


def write_all(fd: int, data: bytes | memoryview) -> None:
    """``os.write`` until everything is written (a write may take only part)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]

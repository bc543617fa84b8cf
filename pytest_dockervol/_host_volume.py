"""Host volumes: a directory on this machine, bind-mounted into containers."""

from __future__ import annotations

import io
import os
import shutil
import stat
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

from docker.types import Mount

from ._engine import HELPER_MOUNT_POINT, Engine
from ._errors import CleanupError, VolumeReadError
from ._identity import RunIdentity
from ._seedplan import SeedPlan
from ._seeds import check_relative_path
from ._tarstream import iter_tar_members
from ._volume import Entry, Volume


class HostVolume(Volume):
    """A host directory bind-mounted into containers.

    ``owned``: the plugin made the directory and deletes it at removal; a directory the
    user passed in is never modified by cleanup. ``engine_if_connected`` gives the engine
    (if the session has one) for handing back files a container wrote as another user.
    """

    kind = "host"
    mount_type: Literal["volume", "bind"] = "bind"

    def __init__(
        self,
        path: Path,
        *,
        owned: bool,
        identity: RunIdentity | None = None,
        engine_if_connected: Callable[[], Engine | None] | None = None,
    ) -> None:
        super().__init__(str(path))
        self.path = path
        self.owned = owned
        self._identity = identity
        self._engine_if_connected = engine_if_connected

    def _write_plan(self, plan: SeedPlan) -> None:
        plan.write_to(self.path)

    def read_bytes(self, path: str) -> bytes:
        __tracebackhide__ = True
        self._check_alive()
        inner = check_relative_path(path)
        full = self.path / inner
        if full.is_symlink():
            raise VolumeReadError(self.name, path, "is a symbolic link")
        if full.is_dir():
            raise VolumeReadError(self.name, path, "is a directory")
        if not full.is_file():
            raise VolumeReadError(self.name, path, "no such file or directory")
        return full.read_bytes()

    def files(self) -> list[str]:
        self._check_alive()
        found: list[str] = []
        for directory, _dirs, names in os.walk(self.path):
            for name in names:
                full = Path(directory, name)
                if full.is_file() and not full.is_symlink():
                    found.append(full.relative_to(self.path).as_posix())
        return sorted(found)

    def entries(self) -> Iterator[Entry]:
        for directory, dirs, files in os.walk(self.path):
            dirs.sort()
            for name in sorted(dirs) + sorted(files):
                full = os.path.join(directory, name)
                st = os.lstat(full)
                link = os.readlink(full) if stat.S_ISLNK(st.st_mode) else ""
                rel = os.path.relpath(full, self.path)
                yield Entry(rel, st.st_mode, st.st_uid, st.st_gid, st.st_size, link)

    def remove(self) -> None:
        """Delete the directory if the plugin made it; a directory the user passed in is kept."""
        __tracebackhide__ = True
        if self._removed:
            return
        self._removed = True
        if not self.owned:
            return
        try:
            shutil.rmtree(self.path)
        except FileNotFoundError:
            pass
        except PermissionError as exc:
            # A container wrote here as root while pytest runs as another user.
            engine = self._engine_if_connected() if self._engine_if_connected else None
            if engine is None or self._identity is None:
                raise self._cleanup_error(exc) from None
            try:
                self._hand_back(engine, self._identity)
                shutil.rmtree(self.path)
            except OSError as again:
                raise self._cleanup_error(again) from None

    def _cleanup_error(self, exc: OSError) -> CleanupError:
        return CleanupError(
            "host directory",
            str(self.path),
            f"{exc.strerror} ({exc.filename}); files written by a container as another "
            "user may need `user=` set on the container to match the host user",
        )

    def _hand_back(self, engine: Engine, identity: RunIdentity) -> None:
        """Give every directory back to this process's user through the archive API (the
        engine extracts as root and applies the tar's owners), so the tree can be deleted.
        No image is run: the helper is created, never started."""
        api = engine.api
        mount = Mount(HELPER_MOUNT_POINT, str(self.path), type="bind")
        helper = engine.create_helper(mount, identity.labels("helper", "host-hand-back"))
        try:
            stream = engine.get_archive(helper, HELPER_MOUNT_POINT)
            directories = [
                (path, info.mode) for path, info in iter_tar_members(stream) if info.isdir()
            ]
            buffer = io.BytesIO()
            with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
                for path, mode in directories:
                    entry = tarfile.TarInfo(path)
                    entry.type = tarfile.DIRTYPE
                    entry.mode = mode | 0o700
                    entry.uid, entry.gid = os.getuid(), os.getgid()
                    tar.addfile(entry)
            api.put_archive(helper, HELPER_MOUNT_POINT, buffer.getvalue())
        finally:
            api.remove_container(helper, force=True)

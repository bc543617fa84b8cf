"""Host volumes: a directory on this machine, bind-mounted into containers."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import stat
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

from .._engine.engine import (
    ENGINE_ERRORS,
    HELPER_MOUNT_POINT,
    Engine,
    EngineNotFound,
    Mount,
    describe_containers,
)
from .._engine.labels import LABEL_RUN, RunIdentity
from .._errors import CleanupError, DockervolUsageError, VolumeReadError
from .._seeding.hostfs import HostTree, UnsafePathError
from .._seeding.plan import SeedPlan
from .._seeding.sources import check_relative_path
from .._seeding.tarstream import iter_tar_members
from .base import Volume
from .helper import Entry

log = logging.getLogger("pytest_dockervol")


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
        plan.write_to(self.path, volume=self.name)

    def _subpath(self, subpath: str) -> str:
        """Never: a bind mount has no subpath (the engine would refuse VolumeOptions on
        it), and the directory inside it can be bound itself."""
        __tracebackhide__ = True
        raise DockervolUsageError(
            f"host volume {self.name} is bound as a directory: subpath mounts are for Docker "
            "volumes; bind that directory itself (volume_factory.host(path))"
        )

    def read_bytes(self, path: str) -> bytes:
        """The file's content, reached without following any link (``_hostfs``): a link
        that a container planted anywhere on the path is refused, never read through."""
        __tracebackhide__ = True
        self._check_alive()
        inner = check_relative_path(path)
        try:
            with HostTree(self.path) as tree:
                return tree.read_file(inner)
        except UnsafePathError as exc:
            why = exc.why if exc.path == inner else f"{exc} on the way"
            raise VolumeReadError(self.name, path, why) from None
        except OSError as exc:
            raise VolumeReadError(self.name, path, str(exc.strerror or exc).lower()) from None

    def files(self) -> list[str]:
        self._check_alive()
        return sorted(entry.path for entry in self.entries() if stat.S_ISREG(entry.mode))

    def entries(self) -> Iterator[Entry]:
        """``os.fwalk`` opens each directory from its parent's descriptor without following
        links, so a directory swapped for a link while this lists is not entered."""
        for directory, dirs, files, dir_fd in os.fwalk(self.path, follow_symlinks=False):
            dirs.sort()
            rel_dir = os.path.relpath(directory, self.path)
            for name in sorted(dirs) + sorted(files):
                try:
                    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                    link = os.readlink(name, dir_fd=dir_fd) if stat.S_ISLNK(st.st_mode) else ""
                except OSError:
                    continue  # removed or replaced (a link no more: EINVAL) while listed
                rel = name if rel_dir == "." else f"{rel_dir}/{name}"
                yield Entry(rel, st.st_mode, st.st_uid, st.st_gid, st.st_size, link)

    def remove(self) -> None:
        """Delete the directory if the plugin made it; a directory the user passed in is kept.

        This run's containers that bind it are removed first (a test may have asked for
        ``run_container`` before ``host_volume``, so its container outlives the volume's
        teardown and would write into the tree while it is deleted). ``shutil.rmtree``
        works from directory descriptors, so links planted meanwhile are not followed.
        """
        __tracebackhide__ = True
        if self._removed:
            return
        self._removed = True
        if not self.owned:
            return
        engine = self._engine_if_connected() if self._engine_if_connected else None
        if engine is not None and self._identity is not None:
            self._remove_own_containers(engine, self._identity)
        try:
            shutil.rmtree(self.path)
        except FileNotFoundError:
            pass
        except PermissionError as exc:
            # A container wrote here as root while pytest runs as another user.
            if engine is None or self._identity is None:
                raise self._cleanup_error(exc, engine) from None
            try:
                self._hand_back(engine, self._identity)
                shutil.rmtree(self.path)
            except OSError as again:
                raise self._cleanup_error(again, engine) from None
        except OSError as exc:
            raise self._cleanup_error(exc, engine) from None

    def _binding_containers(self, engine: Engine, **filters: str) -> list[dict[str, Any]]:
        """Containers (any state) with a bind mount of this directory or a path below it."""
        root = os.path.realpath(self.path)
        found = []
        for container in engine.containers(all=True, filters=filters):
            for mount in container.get("Mounts") or []:
                source = os.path.realpath(str(mount.get("Source") or "/"))
                if source == root or source.startswith(root + os.sep):
                    found.append(container)
                    break
        return found

    def _remove_own_containers(self, engine: Engine, identity: RunIdentity) -> None:
        try:
            for container in self._binding_containers(
                engine, label=f"{LABEL_RUN}={identity.run_id}"
            ):
                with contextlib.suppress(EngineNotFound):
                    engine.remove_container(container["Id"], force=True, v=True)
        except ENGINE_ERRORS as exc:  # the directory is still removed, or reported
            log.debug("could not remove the containers binding %s: %s", self.path, exc)

    def _cleanup_error(self, exc: OSError, engine: Engine | None) -> CleanupError:
        why = f"{exc.strerror or exc} ({exc.filename})"
        users = []
        if engine is not None:
            with contextlib.suppress(*ENGINE_ERRORS):
                users = self._binding_containers(engine)
        if users:
            fix = (
                f"container(s) not created by this run still bind it: "
                f"{describe_containers(users)}; remove them at the end of the test"
            )
        elif isinstance(exc, PermissionError):
            fix = (
                "files written by a container as another user may need `user=` set on the "
                "container to match the host user"
            )
        else:
            fix = "something still writes into it; remove it by hand once that stopped"
        return CleanupError("host directory", str(self.path), f"{why}; {fix}")

    def _hand_back(self, engine: Engine, identity: RunIdentity) -> None:
        """Give every directory back to this process's user through the archive API (the
        engine extracts as root and applies the tar's owners), so the tree can be deleted.
        No image is run: the helper is created, never started."""
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
            engine.put_archive(helper, HELPER_MOUNT_POINT, buffer.getvalue())
        finally:
            engine.remove_container(helper, force=True, v=False)

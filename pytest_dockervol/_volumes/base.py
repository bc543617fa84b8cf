"""The volume a test holds: seed it, attach it to containers, read it back, remove it.

``Volume`` is what Docker volumes and host volumes share. ``adopt`` is the one way a new
volume joins its session: cleanup is registered before the volume is filled, so a failed
seed or copy never leaks it.
"""

from __future__ import annotations

import abc
import csv
import dataclasses
import io
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Literal, TypeVar, Union

from .._engine.engine import Mount
from .._errors import (
    REMOVED_STATE,
    DockervolUsageError,
    SeedPathError,
    SeedWriteError,
    VolumeCopyError,
    VolumeRemovedError,
    short_repr,
)
from .._seeding.plan import SeedPlan
from .._seeding.sources import PlanSource, SeedOptions, build_seed_plan, check_relative_path
from .helper import Entry
from .owner import ResourceOwner

if TYPE_CHECKING:
    from typing_extensions import Self

#: What ``seed()`` accepts: a mapping, a host directory or archive, or a callable.
SeedSource = Union[PlanSource, Callable[["Volume"], object]]
#: A seed checked before anything is created: a plan, or a callable run afterwards.
PreparedSeed = Union[SeedPlan, Callable[["Volume"], object], None]

V = TypeVar("V", bound="Volume")


def prepare_seed(source: SeedSource | None) -> PreparedSeed:
    """Refuse a bad seed before anything is created (a plan has no side effects), and
    keep the plan: a directory is walked and an archive read once, not twice."""
    __tracebackhide__ = True
    if source is None or callable(source):
        return source
    return build_seed_plan(source)


def adopt(owner: ResourceOwner, volume: V, seed: PreparedSeed = None) -> V:
    """Register the new volume's removal with its owner, then fill it; if filling fails,
    remove it and raise: the caller gets a complete volume or nothing is left."""
    __tracebackhide__ = True
    owner.register(volume)
    if seed is None:
        return volume
    try:
        volume.seed(seed)
    except BaseException as exc:
        owner.finalize(volume)
        if volume.removed and isinstance(exc, (SeedWriteError, VolumeCopyError)):
            raise dataclasses.replace(exc, state=REMOVED_STATE) from None  # not "remove it"
        raise
    return volume


def check_target(target: str) -> str:
    if not isinstance(target, str) or not target.startswith("/"):
        raise DockervolUsageError(
            f"mount target {target!r} is not an absolute container path; use e.g. '/data'"
        )
    return target


def check_subpath(subpath: object) -> str:
    """A mount's subpath, normalized: a relative path that stays inside the volume (the
    engine would refuse the rest only when the container starts)."""
    try:
        return check_relative_path(subpath)  # type: ignore[arg-type]  # checked there
    except SeedPathError as exc:
        shown = short_repr(subpath) if isinstance(subpath, str) else exc.path
        raise DockervolUsageError(
            f"mount subpath {shown} {exc.why}; name a directory inside the volume, "
            "e.g. subpath='conf'"
        ) from None


def mount_argument(fields: list[str]) -> str:
    """``docker run --mount``'s argument: CSV, as the CLI reads it (a comma in a path is
    quoted, not a separator)."""
    line = io.StringIO()
    csv.writer(line, lineterminator="").writerow(fields)
    return line.getvalue()


class HeldResource(abc.ABC):
    """What a test holds and can read back, until it is removed (a volume, a snapshot):
    the lifecycle they share, in one place."""

    name: str

    def __repr__(self) -> str:
        state = " removed" if self.removed else ""
        return f"<{type(self).__name__} {self._describe()}{state}>"

    def _describe(self) -> str:
        return self.name

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.remove()

    @property
    @abc.abstractmethod
    def removed(self) -> bool:
        """Whether ``remove()`` ran (or the end of its test or session)."""

    def _check_alive(self) -> None:
        if self.removed:
            raise VolumeRemovedError(self.name)

    def read_text(self, path: str, encoding: str = "utf-8") -> str:
        """A file's content as text (see ``read_bytes``).

        Raises:
            VolumeReadError: no such regular file, or the engine failed to read it.
            VolumeRemovedError: it was removed.
            UnicodeDecodeError: the file is not text in ``encoding``.
        """
        __tracebackhide__ = True
        return self.read_bytes(path).decode(encoding)

    @abc.abstractmethod
    def read_bytes(self, path: str) -> bytes:
        """The content of one regular file.

        Raises:
            VolumeReadError: no such regular file, or the engine failed to read it.
            VolumeRemovedError: it was removed.
        """

    @abc.abstractmethod
    def files(self) -> list[str]:
        """Sorted relative POSIX paths of the regular files.

        Raises:
            VolumeReadError: the engine failed to read it.
            VolumeRemovedError: it was removed.
        """

    @abc.abstractmethod
    def remove(self) -> None:
        """Remove it now (the end of the test or session would otherwise do it).

        Raises:
            CleanupError: it could not be removed (the message says why).
            ClonesAliveError: copy-on-write clones read it (for a volume that cannot wait).
        """


class Volume(HeldResource):
    """A volume a test can seed, attach to containers, read back and remove."""

    kind: str
    #: How containers mount it: a Docker volume by name, a host directory as a bind.
    mount_type: Literal["volume", "bind"] = "volume"

    def __init__(self, name: str) -> None:
        self.name = name
        self._removed = False

    @property
    def removed(self) -> bool:
        return self._removed

    def _check_writable(self, action: str) -> None:
        """Refuse ``action`` (seed, restore) if the volume may not change now."""
        self._check_alive()

    def seed(
        self,
        source: SeedSource | SeedPlan,
        *,
        dest: str = "",
        uid: int | None = None,
        gid: int | None = None,
        file_mode: int | None = None,
        dir_mode: int | None = None,
    ) -> Self:
        """Copy files in: a mapping of path -> content, a host directory, a tar archive, or a
        callable that receives the volume. Everything is validated before anything is written
        (a ``SeedPlan`` is a seed validated already: see ``prepare_seed``).

        Raises:
            SeedPathError, SeedSourceError: the source or an option cannot be used (nothing was
                written).
            SeedWriteError: writing failed part-way (the volume may hold part of the seed).
            ClonesAliveError: copy-on-write clones read this volume.
            VolumeRemovedError: the volume was removed.
        """
        __tracebackhide__ = True
        self._check_writable("seed")
        options = SeedOptions(dest, uid, gid, file_mode, dir_mode)
        if callable(source):
            if options.given:
                raise DockervolUsageError(
                    "seed(callable) takes no dest/uid/gid/file_mode/dir_mode: the callable "
                    "seeds the volume itself; pass them to the seed() calls it makes"
                )
            source(self)
            return self
        if not isinstance(source, SeedPlan):
            source = build_seed_plan(source, options)
        self._write_plan(source)
        return self

    def volumes_dict(self, target: str, *, read_only: bool = False) -> dict[str, dict[str, str]]:
        """An entry for ``containers.run(volumes=...)``.

        Raises:
            DockervolUsageError: ``target`` is not an absolute path.
            VolumeRemovedError: the volume was removed.
        """
        self._check_alive()
        mode = "ro" if read_only else "rw"
        return {self.name: {"bind": check_target(target), "mode": mode}}

    def cli_spec(self, target: str, *, read_only: bool = False, subpath: str | None = None) -> str:
        """The argument of ``docker run -v``; with ``subpath``, the argument of ``docker run
        --mount`` (``-v`` cannot name a subpath; the CLI needs Docker 26 or newer for it).

        Raises:
            DockervolUsageError, EngineVersionError, VolumeRemovedError: as ``mount()``.
        """
        __tracebackhide__ = True
        if subpath is None:
            source, options = next(iter(self.volumes_dict(target, read_only=read_only).items()))
            return f"{source}:{options['bind']}:{options['mode']}"
        mount = self.mount(target, read_only=read_only, subpath=subpath)
        fields = [
            f"type={mount['Type']}",
            f"source={mount['Source']}",
            f"target={mount['Target']}",
            f"volume-subpath={mount['VolumeOptions']['Subpath']}",
        ]
        return mount_argument([*fields, "readonly"] if read_only else fields)

    def mount(self, target: str, *, read_only: bool = False, subpath: str | None = None) -> Mount:
        """A ``docker.types.Mount`` for ``containers.run(mounts=[...])``. With ``subpath``
        (a directory inside the volume), the container sees only that directory: Docker 26
        or newer (API 1.45); the directory must exist when the container starts.

        Raises:
            DockervolUsageError: ``target`` is not an absolute path, ``subpath`` is not a
                relative path inside the volume, or the volume has no subpath mounts.
            EngineVersionError: ``subpath`` on an engine older than API 1.45, which would
                mount the whole volume instead.
            VolumeRemovedError: the volume was removed.
        """
        __tracebackhide__ = True
        self._check_alive()
        mount = Mount(check_target(target), self.name, type=self.mount_type, read_only=read_only)
        if subpath is not None:
            mount.setdefault("VolumeOptions", {})["Subpath"] = self._subpath(subpath)
        return mount

    @abc.abstractmethod
    def _subpath(self, subpath: str) -> str:
        """``subpath`` checked for a mount of this volume (its path, and whether the
        volume and its engine can mount one)."""

    @abc.abstractmethod
    def _write_plan(self, plan: SeedPlan) -> None:
        """Write a checked seed plan into the volume."""

    @abc.abstractmethod
    def entries(self) -> Iterator[Entry]:
        """Every path in the volume with its type, mode, owner and size, as ``ls -lR``
        would list them (the failure report shows these); lazily.

        Raises:
            VolumeReadError: the engine failed to read the volume.
            VolumeRemovedError: the volume was removed.
        """

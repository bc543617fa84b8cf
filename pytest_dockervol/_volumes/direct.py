"""Direct seeding: writing into a volume's directory on this machine instead of streaming
a tar through the engine, when that is provably the same thing.

The archive API costs the engine a re-exec of itself per call; a local engine's volume
is a plain directory (``Mountpoint``) that root on this machine can write. Used only
when every condition below holds, and verified once per engine by a probe file that must
then be visible through the archive API. Anything else takes the archive API.

- pytest runs as root (files get the owners the seed asks for, root by default, exactly
  as the engine would set them);
- the engine shares this machine's file system, is Docker (not Podman), and uses neither
  user-namespace remapping nor rootless mode (uids would be shifted);
- the volume uses the ``local`` driver without options (no tmpfs/nfs/bind mounts, whose
  ``Mountpoint`` is only a mount target);
- no running container uses the volume (it would race the writes; they are made through
  descriptors (``_hostfs``), so a container that starts meanwhile and plants links makes
  the seed fail, never write outside the volume).
"""

from __future__ import annotations

import logging
import os
import stat
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from .._engine.engine import Engine, EngineAPIError
from .._seeding.hostfs import HostTree, write_all

log = logging.getLogger("pytest_dockervol")

#: The engine's verdict (``Engine.verdict``) on direct writes: whether a file written into
#: a volume's directory here shows through the archive API. Asked once per engine; a
#: True also tells ``_cow`` that this machine reads the engine's volume directories.
DIRECT_WRITES = "direct writes"


def _engine_allows(engine: Engine) -> bool:
    if os.geteuid() != 0 or engine.is_podman:
        return False
    if not engine.shares_host_filesystem:
        return False
    options = " ".join(engine.info().get("SecurityOptions") or [])
    return "name=userns" not in options and "name=rootless" not in options


class DirectTarget:
    """Where seeds of one volume may be written straight to disk, if anywhere.

    ``read_back`` reads a file of the volume through the archive API: the probe that
    verifies, once per engine, that the directory is really the volume's.
    """

    def __init__(self, engine: Engine, volume: str, read_back: Callable[[str], bytes]) -> None:
        self._engine = engine
        self._volume = volume
        self._read_back = read_back
        #: The volume's directory, False for none; asked once (a driver never changes).
        self._local: Path | Literal[False] | None = None

    def directory(self) -> Path | None:
        """The volume's directory if direct writes are safe and verified now, else None."""
        engine = self._engine
        known = engine.known_verdict(DIRECT_WRITES)
        if known is False:
            return None
        if known is None and not _engine_allows(engine):
            engine.verdict(DIRECT_WRITES, lambda: False)  # never on this engine
            return None
        if self._local is None:
            self._local = self._local_directory()
        path = self._local
        if not path:
            return None
        if engine.containers_using(self._volume, status="running"):
            return None
        return path if engine.verdict(DIRECT_WRITES, lambda: self._probe(path)) else None

    def _local_directory(self) -> Path | Literal[False]:
        """The volume's own directory on this machine, or False (another driver, options)."""
        try:
            info = self._engine.inspect_volume(self._volume)
        except EngineAPIError:
            return False
        if info.get("Driver") != "local" or info.get("Options"):
            return False
        path = Path(str(info.get("Mountpoint") or ""))
        try:
            if path.is_absolute() and stat.S_ISDIR(os.lstat(path).st_mode):
                return path
        except OSError:
            pass
        return False

    def _probe(self, path: Path) -> bool:
        """Write a file here, look for it through the engine: the same directory, or not."""
        name = f".pytest-dockervol-probe-{uuid.uuid4().hex}"
        try:
            with HostTree(path) as tree:
                fd = tree.create_file(name)
                try:
                    write_all(fd, b"probe")
                finally:
                    os.close(fd)
                try:
                    seen = self._read_back(name) == b"probe"
                finally:
                    tree.remove_non_directory(name)
        except Exception as exc:  # any doubt means no
            log.debug("direct seeding disabled: probe failed: %s", exc)
            seen = False
        log.debug("direct seeding %s for this engine", "enabled" if seen else "disabled")
        return seen

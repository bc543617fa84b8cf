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
- no running container uses the volume (a running container could swap a directory for
  a symlink while we write; the plan also replaces symlinked parents before writing).
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import docker.errors

if TYPE_CHECKING:
    from ._engine import Engine
    from ._volumes import DockerVolume

log = logging.getLogger("pytest_dockervol")


def _engine_allows(engine: Engine) -> bool:
    if os.geteuid() != 0 or engine.is_podman:
        return False
    if not engine.shares_host_filesystem:
        return False
    options = " ".join(engine.api.info().get("SecurityOptions") or [])
    return "name=userns" not in options and "name=rootless" not in options


def mountpoint(volume: DockerVolume) -> Path | None:
    """The volume's directory if direct writes are safe and verified, else None."""
    engine = volume._engine
    if engine.direct_verified is False:
        return None
    if engine.direct_verified is None and not _engine_allows(engine):
        engine.direct_verified = False
        return None
    if volume._direct_dir is None:  # a volume's driver and directory never change: ask once
        volume._direct_dir = _local_directory(volume)
    path = volume._direct_dir
    if not path:
        return None
    running = engine.api.containers(filters={"volume": volume.name, "status": "running"})
    if running:
        return None
    if engine.direct_verified is None:
        engine.direct_verified = _probe(volume, path)
    return path if engine.direct_verified else None


def _local_directory(volume: DockerVolume) -> Path | Literal[False]:
    """The volume's own directory on this machine, or False (another driver, options)."""
    try:
        info = volume._engine.api.inspect_volume(volume.name)
    except docker.errors.APIError:
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


def _probe(volume: DockerVolume, path: Path) -> bool:
    """Write a file here, look for it through the engine: the same directory, or not."""
    name = f".pytest-dockervol-probe-{uuid.uuid4().hex}"
    probe = path / name
    try:
        probe.write_bytes(b"probe")
        seen = volume.read_bytes(name) == b"probe"
    except Exception as exc:  # any doubt means no
        log.debug("direct seeding disabled: probe failed: %s", exc)
        seen = False
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    log.debug("direct seeding %s for this engine", "enabled" if seen else "disabled")
    return seen

"""Copy-on-write volumes: an overlay mount whose lower layers are other volumes' directories.

A copy-on-write clone is a ``local``-driver volume of ``type=overlay``. Docker mounts it
(for a container, or for a never-started helper's archive call) with the source's
directory as the read-only lower layer and an ``upper``/``work`` pair in a layer volume
of its own: a clone costs two volume creations whatever the size of the source. The
paths are the engine's own (``Mountpoint``) and the layer's directories are made like any
seed, so this needs no access to the engine's disk and works for remote engines too.

The kernel's rule: a lower layer must not change while an overlay uses it. So every
copy-on-write volume is labelled with the volumes it needs (``LABEL_NEEDS`` + name), and
the volumes refuse to change or remove a volume while such clones of it live.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import stat
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from .._engine.engine import (
    ENGINE_ERRORS,
    Engine,
    EngineAPIError,
    engine_error_reason,
    engine_errors_as,
)
from .._engine.labels import LABEL_LAYER, LABEL_NEEDS, RunIdentity
from .._engine.statedir import state_dir
from .._seeding.plan import DIR, FILE, PlanBuilder, PlanEntry, SeedPlan
from .._seeding.tarstream import open_stream, read_file_from_tar
from .direct import DIRECT_WRITES
from .helper import VolumeHelper, close_stream, create_volume, remove_with_own_users

log = logging.getLogger("pytest_dockervol")

#: Mount options travel to the kernel in one page; stay clear of its end.
_MAX_OPTIONS = 3800
#: The kernel stacks at most 500 lower layers; far fewer fit in one page anyway.
_MAX_LOWERS = 128
#: Characters that would end an overlay path inside the mount options.
_OPTION_SEPARATORS = (",", ":", "=", "\\")


class CannotLayer(Exception):
    """This volume cannot be an overlay's lower layer (or its clone one); says why."""


def lower_dirs(name: str, info: dict[str, Any]) -> list[str]:
    """The engine-side directories that make up ``name``'s files, top first: its own
    directory for a plain local volume, its upper and lower layers for an overlay clone."""
    driver = info.get("Driver")
    options: dict[str, str] = dict(info.get("Options") or {})
    labels = info.get("Labels") or {}
    if driver != "local":
        raise CannotLayer(f"volume {name} uses the {driver!r} driver, not local")
    if not options:
        return [str(info.get("Mountpoint") or "")]
    if options.get("type") == "overlay" and LABEL_LAYER in labels:
        parsed = dict(part.split("=", 1) for part in options.get("o", "").split(",") if "=" in part)
        return [parsed["upperdir"], *parsed["lowerdir"].split(":")]
    raise CannotLayer(f"volume {name} has driver options ({', '.join(sorted(options))})")


def needs_of(labels: dict[str, str]) -> set[str]:
    """The volumes a copy-on-write volume reads as its layers (from its labels)."""
    return {key[len(LABEL_NEEDS) :] for key in labels if key.startswith(LABEL_NEEDS)}


def needs_labels(volumes: set[str]) -> dict[str, str]:
    return {LABEL_NEEDS + name: "" for name in sorted(volumes)}


def overlay_options(lowers: list[str], layer_directory: str) -> dict[str, str]:
    """The local driver's options for an overlay of ``lowers`` with its upper and work
    directories in ``layer_directory`` (a layer volume's engine-side ``Mountpoint``)."""
    paths = [*lowers, layer_directory]
    if any(
        not path.startswith("/") or any(c in path for c in _OPTION_SEPARATORS) for path in paths
    ):
        raise CannotLayer("the engine's volume paths hold characters mount options cannot carry")
    if len(lowers) > _MAX_LOWERS:
        raise CannotLayer(f"it would stack {len(lowers)} layers (at most {_MAX_LOWERS})")
    mount_options = (
        f"lowerdir={':'.join(lowers)},upperdir={layer_directory}/upper,"
        f"workdir={layer_directory}/work"
    )
    if len(mount_options) > _MAX_OPTIONS:
        raise CannotLayer(f"its {len(lowers)} layers do not fit in the kernel's mount options")
    return {"type": "overlay", "device": "overlay", "o": mount_options}


@dataclass(frozen=True)
class Root:
    """A volume's root directory: what the merged root of its overlay must show."""

    mode: int
    uid: int
    gid: int
    mtime: float


def layer_plan(root: Root) -> SeedPlan:
    """The layer volume's ``upper`` and ``work`` directories. The merged root takes its owner,
    mode and time from ``upper``: those of the source's root (a PGDATA's 0700, uid 999)."""
    builder = PlanBuilder("", root.uid, root.gid, None)
    builder.add(PlanEntry("upper", DIR, stat.S_IMODE(root.mode), root.uid, root.gid, root.mtime))
    builder.add(PlanEntry("work", DIR, 0o700, root.uid, root.gid, builder.now))
    return builder.plan(None)


def root_of(helper: VolumeHelper, top: str, engine: Engine) -> Root:
    """A volume's root: read from the engine's directory when it is on this machine, else
    from the first member of the volume's archive (then closed)."""
    # Only once direct writes proved this machine sees the engine's volume directories.
    if engine.known_verdict(DIRECT_WRITES) and os.path.isabs(top):
        try:
            found = os.lstat(top)
            if stat.S_ISDIR(found.st_mode):
                return Root(found.st_mode, found.st_uid, found.st_gid, found.st_mtime)
        except OSError:
            pass
    stream = helper.get_archive()
    try:
        first = open_stream(stream).next()
    finally:
        close_stream(stream)
    if first is None:
        raise CannotLayer(f"the engine's archive of volume {helper.volume} is empty")
    return Root(first.mode, first.uid, first.gid, first.mtime)


def layering_of(helper: VolumeHelper) -> tuple[list[str], set[str], Root]:
    """What an overlay of ``helper``'s volume needs: its directories (top first), the
    volumes it would read, and its root (CannotLayer if it cannot be one)."""
    name, engine = helper.volume, helper.engine
    # An engine error here costs the copy-on-write, not the clone: a full copy follows,
    # and says the engine's cause in its own error if it fails too.
    with engine_errors_as(lambda why: CannotLayer(f"reading volume {name} failed: {why}")):
        info = engine.inspect_volume(name)
        lowers = lower_dirs(name, info)
        needs = needs_of(info.get("Labels") or {}) | {name}
        return lowers, needs, root_of(helper, lowers[0], engine)


def layered_on(engine: Engine, name: str) -> list[str]:
    """The copy-on-write volumes on the engine, of any run, that read ``name``."""
    found = engine.volumes(filters={"label": LABEL_NEEDS + name})
    # Podman ORs label filters and may list more: check the label itself.
    return [str(v["Name"]) for v in found if LABEL_NEEDS + name in (v.get("Labels") or {})]


def _verdicts_file() -> Path:
    """This machine's probe verdicts, per engine: "" for copy-on-write, else why not."""
    return state_dir() / "copy-on-write.json"


def _read_verdicts() -> dict[str, str]:
    try:
        loaded = json.loads(_verdicts_file().read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}


def _write_verdicts(verdicts: dict[str, str]) -> None:
    path = _verdicts_file()
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(json.dumps(verdicts))
    os.replace(partial, path)


class CopyOnWrite:
    """Whether clones on this engine may be copy-on-write: decided once per engine, by what
    the engine says of itself and then by a probe (an overlay clone of a probe volume that
    must show the probe's file), as direct seeding is verified."""

    def __init__(
        self,
        engine: Engine,
        identity: RunIdentity,
        *,
        wanted: bool,
        creating: Callable[[], Engine],
    ) -> None:
        self._engine = engine
        self._identity = identity
        self._wanted = wanted
        #: Called before the probe creates anything (starts the run's watchdog).
        self._creating = creating

    @functools.cached_property
    def reason_not(self) -> str | None:
        """None when clones are copy-on-write, else why they are full copies."""
        reason = self._decide()
        if reason is not None:
            log.debug("clones are full copies: %s", reason)
        return reason

    @property
    def available(self) -> bool:
        return self.reason_not is None

    def describe(self) -> str:
        reason = self.reason_not
        return "copy-on-write" if reason is None else f"full copy ({reason})"

    def _decide(self) -> str | None:
        if not self._wanted:
            return "--dockervol-clone=copy"
        engine = self._engine
        if engine.is_podman:
            return "Podman mounts volumes with options only for running containers"
        try:
            info = engine.info()
        except ENGINE_ERRORS as exc:
            return f"the engine did not describe itself: {engine_error_reason(exc)}"
        security = " ".join(info.get("SecurityOptions") or [])
        if "name=rootless" in security:
            return "a rootless engine cannot mount overlays of its volumes"
        if "name=userns" in security:
            return "the engine remaps user namespaces"
        # Once per engine, not per session: the verdict is kept on this machine under what
        # could change it (the engine's id, version, kernel and data directory).
        fields = ("ID", "ServerVersion", "KernelVersion", "DockerRootDir", "Driver")
        engine_key = " ".join(str(info.get(field, "?")) for field in fields)
        with FileLock(str(_verdicts_file().with_suffix(".lock"))):
            verdicts = _read_verdicts()
            if engine_key in verdicts:
                return verdicts[engine_key] or None
            started = time.perf_counter()
            try:
                failure = self._probe()
            except ENGINE_ERRORS as exc:
                failure = f"the probe failed: {engine_error_reason(exc)}"
            log.debug("copy-on-write probe took %.3f s", time.perf_counter() - started)
            _write_verdicts({**verdicts, engine_key: failure or ""})
        return failure

    def _probe(self) -> str | None:
        """Make a probe volume with a file in ``lower``, an overlay of it, and read the file
        through the overlay. Everything is labelled as this run's (reaped if we die)."""
        engine = self._creating()
        identity = self._identity
        base = f"{identity.name_prefix}-{identity.short_run}-{identity.worker}-cow-probe"
        layer_name, clone_name = f"{base}-{uuid.uuid4().hex[:6]}", ""
        marker = uuid.uuid4().hex.encode()
        layer = VolumeHelper(engine, layer_name, identity, "session")
        clone: VolumeHelper | None = None
        try:
            create_volume(
                engine,
                layer_name,
                labels=identity.labels("probe", "session"),
                run_id=identity.run_id,
            )
            builder = PlanBuilder("", None, None, None)
            for directory in ("lower", "upper", "work"):
                builder.add(PlanEntry(directory, DIR, 0o755, 0, 0, builder.now))
            builder.add(PlanEntry("lower/probe", FILE, 0o644, 0, 0, builder.now, data=marker))
            layer.put_archive(builder.plan(None).tar_chunks())
            mountpoint = str(engine.inspect_volume(layer_name).get("Mountpoint") or "")
            options = overlay_options([f"{mountpoint}/lower"], mountpoint)
            clone_name = f"{layer_name}-clone"
            labels = {**identity.labels("probe", "session"), LABEL_LAYER: layer_name}
            create_volume(
                engine,
                clone_name,
                labels=labels,
                run_id=identity.run_id,
                driver="local",
                driver_opts=options,
            )
            clone = VolumeHelper(engine, clone_name, identity, "session")
            content = read_file_from_tar(clone.get_archive("probe"), "probe", volume=clone_name)
            if content != marker:
                return "the probe's overlay volume did not show its lower layer"
            return None
        except CannotLayer as exc:
            return str(exc)
        except EngineAPIError as exc:
            return f"the engine cannot mount an overlay volume ({engine_error_reason(exc)})"
        finally:
            for helper, name in ((clone, clone_name), (layer, layer_name)):
                if helper is not None:
                    helper.drop()
                if name:
                    try:
                        remove_with_own_users(engine, identity, name)
                    except ENGINE_ERRORS as exc:  # the run's sweep removes it later
                        log.debug("could not remove probe volume %s: %s", name, exc)

"""What the reports show: a failing test's volumes (what the container saw), and what a
run with --dockervol-keep left."""

from __future__ import annotations

import stat
import tarfile
from collections.abc import Iterable

from .._engine.engine import ENGINE_ERRORS
from .._engine.labels import (
    LABEL_CLONE_OF,
    LABEL_CREATOR,
    LABEL_KIND,
    LABEL_LAYER,
    LABEL_SNAPSHOT_OF,
)
from .._volumes.base import Volume
from .._volumes.helper import Entry
from .heartbeat import KEPT_KIND
from .reaper import Resource, removal_order, without_bookkeeping

MAX_ENTRIES = 60
_LISTING_ERRORS: tuple[type[BaseException], ...] = (*ENGINE_ERRORS, OSError, tarfile.TarError)


def _line(entry: Entry) -> str:
    uid = "?" if entry.uid is None else entry.uid
    gid = "?" if entry.gid is None else entry.gid
    target = f" -> {entry.link}" if entry.link else ""
    return f"{stat.filemode(entry.mode)} {uid:>5}:{gid:<5} {entry.size:>10}  {entry.path}{target}"


def describe_volume(volume: Volume, limit: int = MAX_ENTRIES) -> str:
    """A bounded ``ls -l``-like listing; never raises (a report must not fail)."""
    lines: list[str] = []
    try:
        for entry in volume.entries():
            if len(lines) == limit:
                lines.append(f"... (listing stopped at {limit} entries)")
                break
            lines.append(_line(entry))
    except _LISTING_ERRORS as exc:
        lines.append(f"(could not list the volume: {exc})")
    return "\n".join(lines) if lines else "(empty)"


def kept_report(run_id: str, resources: Iterable[Resource], others: Iterable[str]) -> list[str]:
    """What a run with --dockervol-keep left, one ``KIND NAME  DETAIL`` line each: containers,
    then volumes in an order plain ``docker volume rm`` can follow (readers before what they
    read, a copy-on-write volume's layer right after it), then ``others`` (host directories),
    the run's kept marker, and last the one command that removes the whole run."""
    resources = list(resources)
    ordered = without_bookkeeping(removal_order(resources))
    layers = {r.labels[LABEL_LAYER]: r for r in ordered if LABEL_LAYER in r.labels}
    lines: list[str] = []
    for resource in ordered:
        if resource.kind == "volume" and resource.name in layers:
            continue  # listed right after the volume that reads it
        lines.append(_kept_line(resource))
        layer_name = resource.labels.get(LABEL_LAYER)
        layer = next((r for r in ordered if r.name == layer_name), None)
        if layer is not None:
            lines.append(_kept_line(layer, reader=resource))
    lines += others
    if ordered:
        # `docker volume ls` shows it too: say what it is for, and that it goes by itself.
        lines += [
            f"{KEPT_KIND:9} {r.name}  tells later runs, on any machine, to leave these "
            "alone; removed by the next run once nothing else is left"
            for r in resources
            if r.labels.get(LABEL_KIND) == KEPT_KIND
        ]
        lines.append(f"remove the whole run with: pytest-dockervol rm --run {run_id}")
    return lines


def _kept_line(resource: Resource, reader: Resource | None = None) -> str:
    """``clone     pdv-...-2  of pdv-...-1 (copy-on-write)``: kind, name, what it relates to."""
    labels = resource.labels
    kind = labels.get(LABEL_KIND, resource.kind)
    name = resource.name
    if resource.kind == "container":
        name = name[:12]
        detail = f"from {labels.get(LABEL_CREATOR, '?')}"
        if kind == "helper":  # kept only where it is the one trace of an unlabelled volume
            detail = f"anchors {', '.join(resource.volumes)}: `docker rm -v {name}` removes both"
    elif reader is not None:
        detail = f"of {reader.labels.get(LABEL_KIND, 'volume')} {reader.name}"
    else:
        source = labels.get(LABEL_CLONE_OF) or labels.get(LABEL_SNAPSHOT_OF)
        detail = f"of {source}" if source else ""
    if LABEL_LAYER in labels:
        detail = f"{detail} (copy-on-write)".lstrip()
    return f"{kind:9} {name}  {detail}".rstrip()

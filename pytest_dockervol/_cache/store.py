"""The golden cache on the engine: its entries, the markers that declare them complete,
and the rules for using and removing them. Engine state only, so it holds across runs
and machines.

An entry is a volume built once and reused by later runs. While it is built it carries
the building run's labels, so a build killed half-way is that run's leftover and is
reaped with it. Only then is a *marker* made: a small volume without run labels that
names the entry. Only an entry with a marker is ever used, and the reaper leaves marked
entries alone: they belong to the cache, not to the run that built them. A marker also
records when a run last used the entry (labels cannot change: a newer marker replaces
the older ones).
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from dataclasses import dataclass

from .._engine.engine import Engine, EngineAPIError, EngineNotFound
from .._engine.labels import (
    LABEL_CACHE_ENTRY,
    LABEL_CACHE_KEY,
    LABEL_CACHE_NAME,
    LABEL_CACHE_USED,
    LABEL_CREATED,
    LABEL_KIND,
    LABEL_OWNER,
    LABEL_RUN,
    OWNER_VALUE,
)
from .._volumes.cow import layered_on

log = logging.getLogger("pytest_dockervol")

ENTRY_KIND = "cached"
MARKER_KIND = "cache-marker"
#: A run records its use of an entry only if the last record is older than this.
_TOUCH_AFTER = 3600.0


@dataclass(frozen=True)
class CacheEntry:
    """One entry as the engine lists it; ``markers`` is empty while it is being built."""

    name: str
    digest: str
    key: str
    created: float
    markers: tuple[tuple[str, float], ...]  # (marker volume, when it recorded a use)
    run_id: str  # the run that built it

    @property
    def complete(self) -> bool:
        return bool(self.markers)

    @property
    def last_used(self) -> float:
        return max((used for _, used in self.markers), default=self.created)


def _float(labels: dict[str, str], key: str) -> float:
    try:
        return float(labels.get(key, "0"))
    except ValueError:
        return 0.0


def cache_entries(engine: Engine, digest: str | None = None) -> list[CacheEntry]:
    """The cache's entries (of one key digest), newest first, complete or not."""
    return _scan(engine, digest)[0]


def complete_entry_names(engine: Engine) -> set[str]:
    """Names of complete entries: the reaper leaves them out of their builders' runs."""
    return {entry.name for entry in cache_entries(engine) if entry.complete}


def _scan(engine: Engine, digest: str | None) -> tuple[list[CacheEntry], list[str]]:
    """Entries, and markers whose entry is gone (removed by hand), in one engine call."""
    wanted = [f"{LABEL_OWNER}={OWNER_VALUE}"]
    if digest is not None:
        wanted.append(f"{LABEL_CACHE_KEY}={digest}")
    volumes = engine.volumes(filters={"label": wanted})
    entries: dict[str, dict[str, str]] = {}
    markers: dict[str, list[tuple[str, float]]] = {}
    for volume in volumes:
        labels = volume.get("Labels") or {}
        # Podman ORs label filters: every label is checked again here.
        if labels.get(LABEL_OWNER) != OWNER_VALUE or LABEL_CACHE_KEY not in labels:
            continue
        if digest is not None and labels[LABEL_CACHE_KEY] != digest:
            continue
        if labels.get(LABEL_KIND) == ENTRY_KIND:
            entries[str(volume["Name"])] = labels
        elif labels.get(LABEL_KIND) == MARKER_KIND:
            used = _float(labels, LABEL_CACHE_USED)
            markers.setdefault(labels.get(LABEL_CACHE_ENTRY, ""), []).append((volume["Name"], used))
    found = [
        CacheEntry(
            name,
            labels[LABEL_CACHE_KEY],
            labels.get(LABEL_CACHE_NAME, "?"),
            _float(labels, LABEL_CREATED),
            tuple(markers.get(name, ())),
            labels.get(LABEL_RUN, ""),
        )
        for name, labels in entries.items()
    ]
    # An entry is created before its markers, so one listing that holds a marker holds
    # its entry too, unless the entry was removed.
    orphans = [
        name
        for entry, found_markers in markers.items()
        if entry not in entries
        for name, _ in found_markers
    ]
    return sorted(found, key=lambda entry: entry.created, reverse=True), orphans


def add_marker(engine: Engine, entry: str, digest: str) -> str:
    """Declare ``entry`` complete (or record a use of it): a new marker volume."""
    name = f"{entry}-ok-{uuid.uuid4().hex[:6]}"
    now = f"{time.time():.3f}"
    labels = {
        LABEL_OWNER: OWNER_VALUE,
        LABEL_KIND: MARKER_KIND,
        LABEL_CACHE_KEY: digest,
        LABEL_CACHE_ENTRY: entry,
        LABEL_CACHE_USED: now,
        LABEL_CREATED: now,
    }
    engine.create_volume(name, driver="local", labels=labels)
    return name


def record_use(engine: Engine, entry: CacheEntry) -> None:
    """Note that a run uses ``entry`` now (at most once an hour: it costs two calls)."""
    if time.time() - entry.last_used < _TOUCH_AFTER:
        return
    add_marker(engine, entry.name, entry.digest)  # the new one first: never no marker
    for marker, _ in entry.markers:
        with contextlib.suppress(EngineAPIError):
            engine.remove_volume(marker)


def entry_users(engine: Engine, name: str) -> list[str]:
    """What holds an entry: containers that mount it (helpers of runs that use it) and
    copy-on-write volumes that read it."""
    containers = [str(c["Id"])[:12] for c in engine.containers_using(name)]
    return containers + layered_on(engine, name)


def remove_entry(engine: Engine, entry: CacheEntry) -> str | None:
    """Remove an entry no run uses, then its markers; returns why not, or None."""
    users = entry_users(engine, entry.name)
    if users:
        return f"in use by {', '.join(users)}"
    try:
        engine.remove_volume(entry.name)
    except EngineNotFound:
        pass
    except EngineAPIError as exc:  # a run started using it since we looked
        return str(exc.explanation or exc).strip().splitlines()[0]
    for marker, _ in entry.markers:
        with contextlib.suppress(EngineAPIError):
            engine.remove_volume(marker)
    return None


def evict_unused(engine: Engine, *, max_idle: float) -> list[str]:
    """Remove complete entries no run has used for ``max_idle`` seconds (and no run uses),
    and markers whose entry is gone: nothing may find them again."""
    removed = []
    now = time.time()
    entries, orphans = _scan(engine, None)
    for marker in orphans:
        with contextlib.suppress(EngineAPIError):
            engine.remove_volume(marker)
    for entry in entries:
        if not entry.complete or now - entry.last_used <= max_idle:
            continue
        why_not = remove_entry(engine, entry)
        if why_not is None:
            days = (now - entry.last_used) / 86400
            removed.append(
                f"golden cache entry {entry.key!r} ({entry.name}): unused {days:.1f} days"
            )
        else:
            log.debug("kept unused cache entry %s: %s", entry.name, why_not)
    return removed

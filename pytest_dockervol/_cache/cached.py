"""Golden volumes built once and reused by later runs until what they are built from changes.

``volume_factory.cached(key, seed=..., inputs=..., version=...)`` looks the entry up by its
digest (``_cache_key``); whoever finds none builds it under a lock on this machine, so two
runs (or xdist workers) needing the same missing entry build it once. Runs on different
machines sharing an engine may each build one; neither ever uses an entry before its
marker says it is complete (``_cache_store``). A cached volume never changes: tests clone
it (copy-on-write where the engine allows) and change the clone.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterable

from .._engine.engine import EngineNotFound, Mount
from .._engine.labels import LABEL_CACHE_KEY, LABEL_CACHE_NAME, check_volume_name, slugify
from .._engine.statedir import state_dir
from .._errors import CacheBuildError, DockervolUsageError
from .._volumes.base import PreparedSeed, SeedSource, prepare_seed
from .._volumes.docker import NamedVolume
from .._volumes.owner import ResourceOwner
from .key import cache_digest, check_cache_key
from .once import OncePerRun
from .store import CacheEntry, add_marker, cache_entries, record_use, remove_entry

log = logging.getLogger("pytest_dockervol")


class CachedVolume(NamedVolume):
    """A golden volume of the cache: immutable, cloned by the tests that need its files."""

    kind = "cached"
    cloned_elsewhere = True
    #: Set once the build is over: from then on the volume never changes.
    _sealed = False
    #: Marked complete on the engine: it outlives the run, which only lets go of it.
    _in_cache = False

    def _check_writable(self, action: str) -> None:
        __tracebackhide__ = True
        if self._sealed:
            raise DockervolUsageError(
                f"cached volume {self.name} is immutable (later runs reuse it); "
                f"clone it (volume.clone()) and {action} the clone"
            )
        super()._check_writable(action)

    def mount(
        self, target: str, *, read_only: bool | None = None, subpath: str | None = None
    ) -> Mount:
        """Read-only once built (the default then): a container writing into it would change
        every later run's golden and break its copy-on-write clones."""
        __tracebackhide__ = True
        return super().mount(target, read_only=self._read_only(read_only), subpath=subpath)

    def volumes_dict(
        self, target: str, *, read_only: bool | None = None
    ) -> dict[str, dict[str, str]]:
        return super().volumes_dict(target, read_only=self._read_only(read_only))

    def cli_spec(
        self, target: str, *, read_only: bool | None = None, subpath: str | None = None
    ) -> str:
        __tracebackhide__ = True
        return super().cli_spec(target, read_only=self._read_only(read_only), subpath=subpath)

    def _read_only(self, asked: bool | None) -> bool:
        """Writable only while it is built (by its seed); refused once it is sealed."""
        __tracebackhide__ = True
        if self._sealed and asked is False:
            raise DockervolUsageError(
                f"cached volume {self.name} is immutable and mounts only read-only; "
                "mount a clone of it (volume.clone()) to write"
            )
        return self._sealed if asked is None else asked

    #: A build that failed: its half goes at once, whichever process built it.
    _discarded = False

    def seal(self, *, in_cache: bool) -> None:
        """The build is over: the volume never changes again (and, ``in_cache``, it is the
        cache's, not the run's)."""
        self._sealed, self._in_cache = True, in_cache

    def pin(self, digest: str) -> bool:
        """Hold the entry with this process's helper while it is used (the engine refuses to
        remove a volume a container mounts); False if it is no longer the cache's (removed
        since the lookup, the engine made an empty volume of that name for the helper: that
        one is left alone)."""
        try:
            helper = self._helper.container  # made now: it pins the entry while we use it
            log.debug("cache entry %s held by helper %s", self.name, helper[:12])
            labels = self._engine.inspect_volume(self.name).get("Labels") or {}
            if labels.get(LABEL_CACHE_KEY) == digest:
                return True
        except EngineNotFound:
            pass
        log.debug("cache entry %s went away while being looked up", self.name)
        self._helper.drop()
        return False

    def discard(self) -> None:
        """Remove a half-built entry now."""
        self._discarded = True
        self._owner.finalize(self)

    def _removal_only_releases(self) -> bool:
        """Whether removing it only lets go of it: a complete entry stays in the cache, and
        a run's own entry (``--dockervol-cache=off``) is removed by the process that answers
        for the run, once every worker is done. A half-built one goes at once."""
        return not self._discarded and (self._in_cache or self._owner.identity.is_worker)

    def _live_clones(self) -> list[str]:
        """Letting go never touches the entry: other processes' clones may read it."""
        if self._removal_only_releases():
            return [d.name for d in self._dependents if not d.removed]
        return super()._live_clones()

    def _remove_from_engine(self) -> None:
        __tracebackhide__ = True
        self._helper.drop()
        if not self._removal_only_releases():
            super()._remove_from_engine()


def cached_volume(
    owner: ResourceOwner,
    key: str,
    seed: SeedSource | None,
    inputs: Iterable[str | os.PathLike[str]],
    version: str,
    mode: str,
) -> CachedVolume:
    """The entry for ``key`` and what it is built from: found, or built now (once)."""
    __tracebackhide__ = True
    key = check_cache_key(key)
    if not isinstance(version, str):
        raise DockervolUsageError(f"cache version {version!r} must be a string, e.g. an image id")
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]  # one path, not its characters
    prepared = prepare_seed(seed)
    digest = cache_digest(key, version=version, seed=prepared, inputs=list(inputs))
    identity = owner.identity
    engine = owner.creating_engine
    once = OncePerRun(
        # One build per machine: runs and workers that need the same missing entry wait
        # on this lock; a failure is recorded for this run only (the next run tries again).
        state_dir() / f"cache-{digest[:16]}.lock",
        state_dir() / "runs" / identity.run_id / f"cache-{digest[:16]}.json",
        lambda cause, where: CacheBuildError(key, cause, where),
    )
    with once.turn():
        entry = _usable_entry(cache_entries(engine, digest), identity.run_id, mode)
        if entry is not None:
            volume = CachedVolume(owner, engine, entry.name, creator=owner.creator)
            if volume.pin(digest):
                volume.seal(in_cache=entry.complete)
                owner.register(volume)
                if entry.complete:
                    record_use(engine, entry)
                return volume
        where = f"{identity.worker} while building it"
        return once.build(lambda: _build(owner, key, digest, prepared, mode), lambda: where)


def _usable_entry(entries: list[CacheEntry], run_id: str, mode: str) -> CacheEntry | None:
    """``use``: the newest complete entry. ``refresh`` and ``off`` build once per run, so
    they take only what this very run built (a worker asking after another built it)."""
    for entry in entries:
        ours = entry.run_id == run_id
        if mode == "use" and entry.complete:
            return entry
        if mode == "refresh" and entry.complete and ours:
            return entry
        if mode == "off" and ours:
            return entry
    return None


def _build(
    owner: ResourceOwner, key: str, digest: str, seed: PreparedSeed, mode: str
) -> CachedVolume:
    """Build the entry under a name of its own, then mark it complete (not with ``off``);
    a failed build is discarded before the error goes on."""
    __tracebackhide__ = True
    identity = owner.identity
    engine = owner.creating_engine
    suffix = f"{digest[:12]}-{uuid.uuid4().hex[:6]}"
    name = check_volume_name(f"{identity.name_prefix}-cache-{slugify(key)[:24]}-{suffix}")
    labels = {LABEL_CACHE_KEY: digest, LABEL_CACHE_NAME: key}
    volume = CachedVolume.create(owner, name, kind="cached", labels=labels)
    try:
        owner.register(volume)
        if seed is not None:
            volume.seed(seed)
        volume.seal(in_cache=mode != "off")
        if mode != "off":
            add_marker(engine, name, digest)
    except BaseException:
        volume.discard()
        raise
    log.info("built golden cache entry %s for %r", name, key)
    if mode == "refresh":
        for older in cache_entries(engine, digest):
            if older.name != name and older.complete:
                why_not = remove_entry(engine, older)
                if why_not:
                    log.debug("kept superseded cache entry %s: %s", older.name, why_not)
    return volume

"""Finding and removing what runs left behind: by run id labels, never by diffing the engine.

A run's resources are removed only when the run is known to be over: its lease
is free (it died on this machine), its process is gone from this very pid
namespace, its heartbeat in the engine stopped (runs on any machine, see
_heartbeat.py), or, for runs without a heartbeat (older plugin versions), its newest
resource is older than the age threshold. Whatever was created after the reaper
started looking is left alone, as Ryuk does.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .._cache.store import ENTRY_KIND, complete_entry_names
from .._engine.engine import Engine, EngineAPIError, EngineNotFound
from .._engine.labels import (
    LABEL_CREATED,
    LABEL_HEARTBEAT_TIMEOUT,
    LABEL_HOST,
    LABEL_KIND,
    LABEL_NAMESPACE,
    LABEL_OWNER,
    LABEL_RUN,
    LABEL_SESSION_PID,
    LABEL_WORKER,
    OWNER_VALUE,
    RunIdentity,
)
from .._volumes.cow import needs_of
from .heartbeat import (
    BOOKKEEPING_KINDS,
    HEARTBEAT_KIND,
    KEPT_KIND,
    engine_now,
    parse_engine_time,
)
from .lease import (
    ended_leases,
    forget_logs_of_ended_runs,
    forget_run_state,
    lease_state,
    pid_alive,
)

log = logging.getLogger("pytest_dockervol")


@dataclass(frozen=True)
class Resource:
    """One labelled container or volume, as listed by the engine."""

    kind: str  # "container" or "volume"
    name: str
    labels: dict[str, str]
    #: A container's volumes (by name), as the engine lists its mounts.
    volumes: tuple[str, ...] = ()
    #: A volume's creation time by the engine's clock (``CreatedAt``), as listed.
    created_at: str = ""

    @property
    def run_id(self) -> str:
        return self.labels.get(LABEL_RUN, "")

    @property
    def created(self) -> float:
        try:
            return float(self.labels.get(LABEL_CREATED, "0"))
        except ValueError:
            return 0.0


@dataclass
class RunSummary:
    """All resources of one run, and what they say about who made them."""

    run_id: str
    resources: list[Resource] = field(default_factory=list)

    def _label(self, key: str) -> str:
        return next((r.labels[key] for r in self.resources if key in r.labels), "")

    @property
    def host(self) -> str:
        return self._label(LABEL_HOST)

    @property
    def namespace(self) -> str:
        return self._label(LABEL_NAMESPACE)

    @property
    def session_pid(self) -> int:
        value = self._label(LABEL_SESSION_PID)
        return int(value) if value.isdigit() else 0

    @property
    def newest(self) -> float:
        return max((r.created for r in self.resources), default=0.0)

    def _of_kind(self, kind: str) -> list[Resource]:
        return [
            r for r in self.resources if r.kind == "volume" and r.labels.get(LABEL_KIND) == kind
        ]

    @property
    def last_beat(self) -> float | None:
        """When its newest heartbeat was made, by the engine's clock; None without one."""
        beats = []
        for beat in self._of_kind(HEARTBEAT_KIND):
            with contextlib.suppress(ValueError):
                beats.append(parse_engine_time(beat.created_at))
        return max(beats, default=None)

    @property
    def beat_timeout(self) -> float:
        """The timeout the run declared on its heartbeats (it beats five times within it)."""
        declared = [0.0]
        for beat in self._of_kind(HEARTBEAT_KIND):
            with contextlib.suppress(ValueError):
                declared.append(float(beat.labels.get(LABEL_HEARTBEAT_TIMEOUT, "0")))
        return max(declared)

    @property
    def kept_marker(self) -> bool:
        return bool(self._of_kind(KEPT_KIND))

    @property
    def held(self) -> list[Resource]:
        """What the run holds, without its bookkeeping (heartbeats, kept marker)."""
        return without_bookkeeping(self.resources)


def without_bookkeeping(resources: Iterable[Resource]) -> list[Resource]:
    """``resources`` (in their order) but a run's heartbeats and kept marker: what a user
    would call the run's volumes and containers."""
    return [r for r in resources if r.labels.get(LABEL_KIND) not in BOOKKEEPING_KINDS]


def list_resources(
    engine: Engine, run_id: str | None = None, worker: str | None = None
) -> list[Resource]:
    """Containers first, then volumes, that carry the plugin's owner label (and run/worker)."""
    wanted = {LABEL_OWNER: OWNER_VALUE}
    if run_id is not None:
        wanted[LABEL_RUN] = run_id
    if worker is not None:
        wanted[LABEL_WORKER] = worker
    filters = {"label": [f"{key}={value}" for key, value in wanted.items()]}
    found = [
        Resource(
            "container",
            c["Id"],
            c.get("Labels") or {},
            tuple(str(m["Name"]) for m in c.get("Mounts") or [] if m.get("Name")),
        )
        for c in engine.containers(all=True, filters=filters)
    ]
    volumes = engine.volumes(filters=filters)
    found += [
        Resource("volume", v["Name"], v.get("Labels") or {}, created_at=str(v.get("CreatedAt", "")))
        for v in volumes
    ]
    # The engine filtered by label, but Podman 4 ORs several label filters on volumes:
    # check every label again so nothing unlabelled, or of another run, is ever touched.
    found = [
        r
        for r in found
        if r.run_id and all(r.labels.get(key) == value for key, value in wanted.items())
    ]
    if any(r.labels.get(LABEL_KIND) == ENTRY_KIND for r in found):
        # A golden-cache entry belongs to the run that builds it only until it is complete.
        complete = complete_entry_names(engine)
        found = [r for r in found if r.kind == "container" or r.name not in complete]
    return removal_order(found)


def removal_order(resources: Iterable[Resource]) -> list[Resource]:
    """Containers, then copy-on-write volumes before the volumes they read (a reader needs
    every volume its source needs, and the source: always more), so layers and sources
    go last. The kernel requires no change to a lower layer while an overlay is mounted."""
    return sorted(resources, key=lambda r: (r.kind != "container", -len(needs_of(r.labels))))


def group_by_run(resources: Iterable[Resource]) -> dict[str, RunSummary]:
    runs: dict[str, RunSummary] = {}
    for resource in resources:
        runs.setdefault(resource.run_id, RunSummary(resource.run_id)).resources.append(resource)
    return runs


def verdict(
    run: RunSummary,
    me: RunIdentity,
    *,
    lease: str,
    now: float,
    max_age: float,
    engine_time: float | None = None,
    heartbeat_timeout: float = 60.0,
    is_alive: Callable[[int], bool] = pid_alive,
) -> tuple[bool, str]:
    """Whether a run is over, and why (pure: unit-tested without Docker).

    ``engine_time`` is the engine's clock now, by which heartbeats age; a run is judged by
    the longer of ``heartbeat_timeout`` and the timeout it declared, so a reader with a
    short timeout never takes a run that beats slowly for dead."""
    if run.run_id == me.run_id:
        return False, "this run"
    if lease == "alive":
        return False, "its lease is held"
    if lease == "kept" or run.kept_marker:
        if not run.held:  # its volumes were removed by hand: the marker guards nothing
            return True, "kept, and nothing but its kept marker is left"
        return False, "ended with --dockervol-keep"
    if lease == "dead":
        return True, "its process died (its lease is free)"
    same_namespace = run.namespace == me.namespace and me.namespace != "unknown"
    if same_namespace and run.session_pid and not is_alive(run.session_pid):
        return True, f"its process {run.session_pid} is gone"
    last_beat = run.last_beat
    if last_beat is not None and engine_time is not None:
        silent = engine_time - last_beat
        limit = max(heartbeat_timeout, run.beat_timeout)
        if silent > limit:
            return True, f"its heartbeat stopped {silent:.0f} s ago (timeout {limit:g} s)"
        where = "this machine" if same_namespace else f"host {run.host or '?'}"
        return False, f"on {where}, its heartbeat is {max(silent, 0):.0f} s old"
    age = now - run.newest
    if age > max_age:
        return True, f"idle for {age / 3600:.1f} h (threshold {max_age / 3600:g} h)"
    if same_namespace and run.session_pid:
        return False, f"its process {run.session_pid} is alive"
    where = "this machine" if same_namespace else f"host {run.host or '?'}"
    return False, f"on {where}; counted as over after {max_age / 3600:g} h idle"


@dataclass
class ReapResult:
    removed: list[str] = field(default_factory=list)
    #: "volume NAME" (or "container ID") -> "volume NAME: why it could not be removed"
    failed: dict[str, str] = field(default_factory=dict)
    #: Why the run was judged over (set by ``reap_dead_runs``).
    reason: str = ""


def reap_run(
    engine: Engine, run_id: str, *, worker: str | None = None, created_before: float | None = None
) -> ReapResult:
    """Remove one run's containers (with anonymous volumes) and then its volumes."""
    result = ReapResult()
    for resource in list_resources(engine, run_id, worker):
        if created_before is not None and resource.created >= created_before:
            continue  # made after we started looking: not ours to judge
        try:
            if resource.kind == "container":
                engine.remove_container(resource.name, force=True, v=True)
            else:
                engine.remove_volume(resource.name)
        except EngineNotFound:
            continue
        except EngineAPIError as exc:
            what = f"{resource.kind} {resource.name}"
            result.failed[what] = f"{what}: {exc.explanation or exc}"
            continue
        kind = resource.labels.get(LABEL_KIND, resource.kind)
        result.removed.append(f"{kind} {resource.name[:64]}")
    return result


def reap_until_quiet(
    engine: Engine, run_id: str, *, attempts: int = 30, pause: float = 1.0
) -> ReapResult:
    """Sweep a dead run until two sweeps in a row find nothing: orphaned workers may
    still create (or hold) resources for a moment after their controller died."""
    total = ReapResult()
    quiet = 0
    for _ in range(attempts):
        result = reap_run(engine, run_id)
        total.removed += result.removed
        if not result.removed and not result.failed:
            quiet += 1
            if quiet >= 2:
                total.failed = {}
                return total
        else:
            quiet = 0
        total.failed = result.failed
        time.sleep(pause)
    return total


def engine_time_for(engine: Engine, runs: Iterable[RunSummary], me: RunIdentity) -> float | None:
    """The engine's clock, asked only when another run has a heartbeat to judge."""
    if any(r.run_id != me.run_id and r.last_beat is not None for r in runs):
        return engine_now(engine)
    return None


def reap_dead_runs(
    engine: Engine, me: RunIdentity, *, max_age: float, heartbeat_timeout: float = 60.0
) -> dict[str, ReapResult]:
    """Reap every other run that is over; leave the living and the undecided alone."""
    started_looking = time.time()
    reaped: dict[str, ReapResult] = {}
    runs = group_by_run(list_resources(engine)).values()
    engine_time = engine_time_for(engine, runs, me)
    for run in runs:
        over, why = verdict(
            run,
            me,
            lease=lease_state(run.run_id),
            now=started_looking,
            max_age=max_age,
            engine_time=engine_time,
            heartbeat_timeout=heartbeat_timeout,
        )
        if not over:
            log.debug("not reaping run %s: %s", run.run_id, why)
            continue
        # A run whose heartbeat stopped made nothing since: its machine's clock, which
        # labelled its resources, is not comparable with ours, so it is not asked.
        guard = None if run.last_beat is not None else started_looking
        result = reap_run(engine, run.run_id, created_before=guard)
        result.reason = why
        log.info("reaped run %s (%s): %d removed", run.run_id, why, len(result.removed))
        if not result.failed:
            with contextlib.suppress(OSError):
                forget_run_state(run.run_id)
        reaped[run.run_id] = result
    # Killed before creating anything, already reaped, or kept and then removed by hand.
    for run_id in ended_leases():
        if run_id not in reaped and not list_resources(engine, run_id):
            with contextlib.suppress(OSError):
                forget_run_state(run_id)
    with contextlib.suppress(OSError):
        forget_logs_of_ended_runs()
    return reaped


def release_kept(engine: Engine, run_id: str) -> tuple[list[Resource], dict[str, str]]:
    """A run ended with --dockervol-keep: remove its never-started helper containers, which
    only pin its volumes (``docker volume rm`` would refuse them as in use), and return what
    stays, with what could not be released. Never with ``v``: an anonymous volume anchored
    by its helper stays, labelled as the run's, an ordinary volume ``rm --run`` removes. A
    helper stays only if a volume it mounts carries no label of the plugin (Podman labels
    no anonymous volume): it is then the only way to find that volume again."""
    resources = list_resources(engine, run_id)
    labelled = {r.name for r in resources if r.kind == "volume"}
    released: set[str] = set()
    failed: dict[str, str] = {}
    for helper in resources:
        if helper.kind != "container" or helper.labels.get(LABEL_KIND) != "helper":
            continue
        if not helper.volumes or not all(
            name in labelled or _is_labelled(engine, name) for name in helper.volumes
        ):
            continue
        try:
            engine.remove_container(helper.name, force=True, v=False)
        except EngineNotFound:
            pass
        except EngineAPIError as exc:
            what = f"container {helper.name}"
            failed[what] = f"helper {what}: {exc.explanation or exc}"
            continue
        released.add(helper.name)
    return [r for r in resources if r.name not in released], failed


def _is_labelled(engine: Engine, volume: str) -> bool:
    """Whether the volume carries the plugin's labels (a complete golden-cache entry does,
    though it is no longer its builder's): found again by them, without a helper."""
    try:
        labels = engine.inspect_volume(volume).get("Labels") or {}
    except EngineNotFound:
        return True  # gone: a helper pins nothing
    return labels.get(LABEL_OWNER) == OWNER_VALUE

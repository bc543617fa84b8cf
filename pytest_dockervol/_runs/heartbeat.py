"""Heartbeats: how a run on any machine tells whether a run elsewhere on the engine is alive.

A lease (``_lease.py``) only speaks for runs of this machine. A run's heartbeat lives in
the engine itself, so every machine that shares the engine reads it: a tiny labelled
volume, replaced every ``timeout / 5`` seconds by the run's watchdog. Its age is read by
the engine's clock alone (the volume's ``CreatedAt`` against the engine's own time, see
``engine_now``), so clocks of different machines never matter. No container, no image.

Each process of a run makes one beat when it first creates something (so a run is never
without a heartbeat once it owns a resource); the watchdog then renews it, once the run has
a beat (``started_flag``), and each renewal removes the run's older beats. A run that ends
with --dockervol-keep leaves a "kept" marker instead, which no reaper on any machine takes
for a stopped heartbeat.

Known races, and why they are harmless:
- The final sweep removes the beats while the watchdog renews: the run first stops the
  watchdog's beating (``stop_beating``: a flag written under the lock every renewal holds),
  so no beat can appear after the sweep has listed the run's volumes.
- A renewal fails (the engine did not answer): the previous beat stays, and the next
  renewal removes it; a run is judged dead only after several missed renewals.
- Two beats of one run exist for a moment: a reader takes the newest.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path

from filelock import FileLock, Timeout

from .._engine.engine import Engine, EngineCallError, EngineNotFound
from .._engine.labels import (
    LABEL_HEARTBEAT_TIMEOUT,
    LABEL_KIND,
    LABEL_OWNER,
    LABEL_RUN,
    OWNER_VALUE,
    RunIdentity,
)
from .._engine.statedir import state_dir

log = logging.getLogger("pytest_dockervol.heartbeat")

HEARTBEAT_KIND = "heartbeat"
#: Left by a run that ended with --dockervol-keep: its resources stay until ``rm --run``.
KEPT_KIND = "kept-marker"
#: The run's own bookkeeping volumes: removed with the run, never listed as kept.
BOOKKEEPING_KINDS = (HEARTBEAT_KIND, KEPT_KIND)
#: Renewals per timeout: a run is judged dead only after this many renewals in a row failed.
BEATS_PER_TIMEOUT = 5
_FRACTION = re.compile(r"\.(\d+)")


def beat_interval(timeout: float) -> float:
    return max(timeout / BEATS_PER_TIMEOUT, 0.2)


def parse_engine_time(text: str) -> float:
    """An engine timestamp (RFC 3339, ``Z`` or an offset, up to nanoseconds) in epoch seconds."""
    cleaned = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), text.strip(), count=1)
    if cleaned.endswith(("Z", "z")):
        cleaned = cleaned[:-1] + "+00:00"
    moment = datetime.fromisoformat(cleaned)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def engine_now(engine: Engine) -> float:
    """The engine's clock, the one every heartbeat's age is measured by: the ``Date`` its
    HTTP server stamps on a ``/_ping`` answer (1 ms, to the second like ``CreatedAt``),
    else ``docker info``'s ``SystemTime`` (Podman takes ~0.3 s to answer ``info``)."""
    date = engine.ping_date()
    with contextlib.suppress(TypeError, ValueError):
        if date:
            return parsedate_to_datetime(date).timestamp()
    return parse_engine_time(str(engine.info()["SystemTime"]))


@dataclass(frozen=True)
class Heart:
    """What a beating process needs: where its beats go and how they are labelled. Plain
    data, so the watchdog process gets it as one JSON argument."""

    run_id: str
    #: The beating process's labels (``RunIdentity.labels``), kind and timeout added here.
    labels: dict[str, str]
    name_base: str
    timeout: float
    #: The name of the marker a kept run leaves (one per run: ``PREFIX-RUN-kept``).
    kept_name: str

    @classmethod
    def of(cls, identity: RunIdentity, timeout: float, beater: str | None = None) -> Heart:
        """The heart of one process of the run (``beater``: the watchdog, or its worker)."""
        beater = beater or identity.worker
        return cls(
            run_id=identity.run_id,
            labels=identity.labels(HEARTBEAT_KIND, "heartbeat"),
            name_base=f"{identity.name_prefix}-{identity.short_run}-{beater}-heartbeat",
            timeout=timeout,
            kept_name=f"{identity.name_prefix}-{identity.short_run}-kept",
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Heart:
        return cls(**json.loads(text))

    def beat_labels(self, kind: str = HEARTBEAT_KIND) -> dict[str, str]:
        return {**self.labels, LABEL_KIND: kind, LABEL_HEARTBEAT_TIMEOUT: f"{self.timeout:g}"}

    def beat(self, engine: Engine, serial: int, *, renew: bool = False) -> str | None:
        """Make one beat (``renew``: and remove the run's older ones); None once the run
        stopped beating. Never raises for the engine: a missed beat is only a missed beat."""
        with _lock(self.run_id):
            if _stop_flag(self.run_id).exists():
                return None
            name = f"{self.name_base}-{serial}"
            try:
                made = _create(engine, name, self.beat_labels())
                if renew:
                    remove_beats(engine, self.run_id, keep=made)
            except (EngineCallError, OSError) as exc:
                log.warning("heartbeat of run %s missed: %s", self.run_id, exc)
                return None
            started_flag(self.run_id).touch()
            return made

    def leave_kept_marker(self, engine: Engine) -> None:
        """The run ended with --dockervol-keep: its beats make way for a marker that never
        ages, so no reaper anywhere takes the kept resources for a dead run's."""
        stop_beating(self.run_id)
        _create(engine, self.kept_name, self.beat_labels(KEPT_KIND))
        remove_beats(engine, self.run_id)


def _create(engine: Engine, name: str, labels: dict[str, str]) -> str:
    created = engine.create_volume(name, driver="local", labels=labels)
    found = (created or {}).get("Labels") or {}
    if found.get(LABEL_RUN) != labels[LABEL_RUN]:
        # Docker answers a create of an existing name with that volume: not ours. An
        # engine error, as a refusal would be: a missed beat, a failed kept marker.
        raise EngineCallError(f"volume {name} exists and is not this run's")
    return name


def remove_beats(engine: Engine, run_id: str, *, keep: str | None = None) -> None:
    """Remove the run's beats (all but ``keep``), checking the labels again."""
    wanted = [f"{LABEL_OWNER}={OWNER_VALUE}", f"{LABEL_RUN}={run_id}"]
    for volume in engine.volumes(filters={"label": wanted}):
        labels = volume.get("Labels") or {}
        if (
            volume["Name"] == keep
            or labels.get(LABEL_RUN) != run_id
            or labels.get(LABEL_KIND) != HEARTBEAT_KIND
        ):
            continue
        with contextlib.suppress(EngineNotFound):
            engine.remove_volume(volume["Name"])


def _run_dir(run_id: str) -> Path:
    path = state_dir() / "runs" / run_id
    path.mkdir(parents=True, exist_ok=True)
    return path


def _stop_flag(run_id: str) -> Path:
    return _run_dir(run_id) / "heartbeat.stopped"


def started_flag(run_id: str) -> Path:
    """There once the run has a beat: only then does its watchdog renew it (a run that
    never touches the engine gets no heartbeat, and its watchdog never connects)."""
    return _run_dir(run_id) / "heartbeat.started"


def _lock(run_id: str) -> FileLock:
    return FileLock(str(_run_dir(run_id) / "heartbeat.lock"))


def stop_beating(run_id: str, wait: float = 60.0) -> None:
    """No beat of this run is made after this returns (a renewal under way finishes first),
    so a sweep that lists the run's volumes next misses none of them."""
    try:
        with _lock(run_id).acquire(timeout=wait):
            _stop_flag(run_id).touch()
    except Timeout:  # a renewal hangs on the engine: flag it anyway; it will see it
        _stop_flag(run_id).touch()

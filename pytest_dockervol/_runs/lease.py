"""Run leases: how one run tells whether another run on this machine is still alive.

The run's first process (the xdist controller, or pytest without xdist) holds an
exclusive ``flock`` on ``<tmp>/pytest-dockervol-<uid>/leases/<run>.lock`` for its whole
life. The kernel drops the lock when the process dies, SIGKILL and OOM included,
so a lock anyone can take again means a dead run. A ``.json`` beside it records
the owner (pid, host, start time) for humans, like pytest's numbered-dir locks.

Known races, and why they are harmless:
- Two new runs test the same dead run's lease at once: one gets the lock and
  reaps, the other sees it held and leaves the run alone this time.
- A run is killed between creating its lease and its first resource: the lease
  is stale and empty; the next run reaps nothing and deletes the lease files.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path

from filelock import FileLock, Timeout

from .._engine.statedir import state_dir


def _lease_dir() -> Path:
    path = state_dir() / "leases"
    path.mkdir(parents=True, exist_ok=True)
    return path


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


class RunLease:
    """This run's lease, held from configure to the end of the session."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.path = _lease_dir() / f"{run_id}.lock"
        self._lock = FileLock(str(self.path), timeout=0)

    def acquire(self) -> None:
        self._lock.acquire()
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        self.path.with_suffix(".json").write_text(json.dumps(owner))

    def release(self, *, kept: bool = False, finished: bool = True) -> None:
        """A clean end: drop the lock and the files (nothing is left to reap), or, for a
        run that keeps its resources (--dockervol-keep), mark the lease so no reaper takes them.
        A run whose cleanup did not finish (``finished=False``, a second Ctrl-C) drops only
        the lock: the lease then reads "dead", so any reaper may finish the job."""
        info = self.path.with_suffix(".json")
        if kept:
            owner = json.loads(info.read_text())
            info.write_text(json.dumps({**owner, "kept": True}))
        if kept or not finished:
            self._lock.release()
            return
        info.unlink(missing_ok=True)
        self._lock.release()
        self.path.unlink(missing_ok=True)


def lease_state(run_id: str) -> str:
    """``"alive"`` (lock held), ``"dead"`` (lease left by a killed run), ``"kept"`` (ended
    with --dockervol-keep) or ``"unknown"``.

    "unknown" means no lease on this machine: the run lived elsewhere, or the
    temporary directory was wiped; callers fall back to pids and age.
    """
    path = _lease_dir() / f"{run_id}.lock"
    if not path.exists():
        return "unknown"
    probe = FileLock(str(path), timeout=0)
    try:
        probe.acquire()
    except Timeout:
        return "alive"
    try:
        info = path.with_suffix(".json")
        with contextlib.suppress(OSError, ValueError):
            if json.loads(info.read_text()).get("kept"):
                return "kept"
        return "dead"
    finally:
        probe.release()


def forget_lease(run_id: str) -> None:
    """Delete a dead run's lease files once its resources are reaped."""
    path = _lease_dir() / f"{run_id}.lock"
    path.with_suffix(".json").unlink(missing_ok=True)
    path.unlink(missing_ok=True)


def ended_leases() -> list[str]:
    """Run ids whose lease file is left here but no longer held: killed runs, and runs that
    ended with --dockervol-keep (their lease goes once nothing of theirs is left)."""
    return [
        path.stem
        for path in sorted(_lease_dir().glob("*.lock"))
        if lease_state(path.stem) in ("dead", "kept")
    ]


def _watchdog_dir() -> Path:
    path = state_dir() / "watchdog"
    path.mkdir(exist_ok=True)
    return path


def watchdog_log(run_id: str) -> Path:
    """Where the run's watchdog writes what it reaped; left only while the run is not
    known to be reaped completely (the log says why)."""
    return _watchdog_dir() / f"{run_id}.log"


def forget_logs_of_ended_runs() -> None:
    """Delete watchdog logs of runs whose lease is gone: a run's lease exists before its
    watchdog does and is forgotten only once the run is over and reaped. A dead lease's
    log stays until its run is reaped (with ``forget_run_state``)."""
    for log in sorted(_watchdog_dir().glob("*.log")):
        if lease_state(log.stem) == "unknown":
            log.unlink(missing_ok=True)


def forget_run_state(run_id: str) -> None:
    """Remove a finished or reaped run's files: its lease, its shared-volume locks and
    its watchdog's log."""
    forget_lease(run_id)
    watchdog_log(run_id).unlink(missing_ok=True)
    run_dir = state_dir() / "runs" / run_id
    if run_dir.is_dir():
        for entry in run_dir.iterdir():
            entry.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            run_dir.rmdir()

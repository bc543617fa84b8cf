"""Build something once per run, whatever the number of processes asking: the first one
builds under a file lock, and its outcome is recorded for the others.

A failed build is never retried within the run: every process that asks afterwards
raises the same error, naming the process that failed first. This serves both run-wide
shared volumes and golden-cache entries.

Known races, and why they are harmless:
- Two processes ask at once: the lock makes one build; the other waits, then reads
  the record (or, for the cache, finds the entry on the engine).
- A process is killed while it builds: the kernel drops its lock and no record is
  written; the next one to ask builds again, and the dead run's half-built volume goes
  with its run (the reaper).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from filelock import FileLock

T = TypeVar("T")


@dataclass(frozen=True)
class OncePerRun:
    """One build, its lock and its record. ``error(cause, where)`` makes the error each
    asking process raises when the build failed."""

    lock: Path
    record: Path
    error: Callable[[str, str], Exception]

    @contextlib.contextmanager
    def turn(self) -> Iterator[dict[str, str] | None]:
        """Hold the lock; yield what the run recorded (None: nothing yet).

        Raises:
            The build's error (``self.error``): the build failed in this run already.
        """
        __tracebackhide__ = True
        self.record.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.lock)):
            recorded = self._read()
            if recorded is not None and recorded["state"] == "failed":
                raise self.error(recorded["cause"], recorded["where"])
            yield recorded

    def build(self, make: Callable[[], T], where: Callable[[], str]) -> T:
        """``make()`` within ``turn()``, its outcome recorded. ``make`` removes what it
        made before it raises; ``where()`` then names the failing step for the others.

        Raises:
            The build's error (``self.error``), with the cause kept; a KeyboardInterrupt
            or SystemExit is recorded, then passes unchanged.
        """
        __tracebackhide__ = True
        try:
            made = make()
        except BaseException as exc:
            cause, failed_in = f"{type(exc).__name__}: {exc}", where()
            self._write({"state": "failed", "cause": cause, "where": failed_in})
            if isinstance(exc, Exception):  # the same error as every other process gets
                raise self.error(cause, failed_in) from exc
            raise
        self._write({"state": "ready", "where": where()})
        return made

    def _read(self) -> dict[str, str] | None:
        if not self.record.exists():
            return None
        loaded: dict[str, str] = json.loads(self.record.read_text())
        return loaded

    def _write(self, outcome: dict[str, str]) -> None:
        self.record.write_text(json.dumps(outcome))

"""The watchdog: a small process that keeps the run's heartbeat and outlives a killed run.

The run's first process starts it in a new session (so killing the run's process
group spares it) with a pipe on its stdin. While the pipe is open, it renews the run's
heartbeat in the engine (``_heartbeat.py``) every ``timeout / 5`` seconds: a pause of the
pytest process (a debugger, SIGSTOP) does not stop it, only the end of this machine
(or of the watchdog) does. The run writes ``done`` only once its cleanup is complete; any
other end of the pipe (SIGKILL, OOM, a CI cancel, a cleanup cut short by a second Ctrl-C)
means the run's resources may be left, and the watchdog sweeps the run's labelled
resources at once (unless the run keeps them). No image, no helper container.

    python -c <_LAUNCHER> HEART_JSON INTERVAL reap|keep STARTED_FLAG
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
from typing import IO

from .._engine.engine import Engine
from .heartbeat import Heart, beat_interval, started_flag
from .lease import forget_run_state, watchdog_log

DONE = b"done"
log = logging.getLogger("pytest_dockervol.watchdog")
#: The watchdog waits in a bare interpreter: the package (docker, pytest) is imported only
#: at its first renewal (each process of the run made a beat of its own when it first
#: created something) or when there is something to reap, so a short clean run's
#: stand-down costs a few milliseconds.
_LAUNCHER = (
    "import os, select, sys\n"
    "heart, interval, mode, started = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]\n"
    "beating = None\n"
    "while not select.select([sys.stdin], [], [], interval)[0]:\n"
    "    if not os.path.exists(started):\n"
    "        continue\n"
    "    if beating is None:\n"
    "        from pytest_dockervol._runs.watchdog import Beating\n"
    "        beating = Beating(heart)\n"
    "    beating.renew()\n"
    "if sys.stdin.buffer.read() == b'done' or mode == 'keep':\n"
    "    sys.exit(0)\n"
    "from pytest_dockervol._runs.watchdog import reap\n"
    "sys.exit(reap(heart))\n"
)


class Watchdog:
    """The run's handle on its watchdog process."""

    def __init__(self, heart: Heart, *, keep: bool = False) -> None:
        self.log_path = watchdog_log(heart.run_id)
        arguments = [
            heart.to_json(),
            f"{beat_interval(heart.timeout)!r}",
            "keep" if keep else "reap",
            str(started_flag(heart.run_id)),
        ]
        with open(self.log_path, "ab") as log_file:
            self._process = subprocess.Popen(
                [sys.executable, "-c", _LAUNCHER, *arguments],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=log_file,
                start_new_session=True,
                close_fds=True,
            )

    def hand_over(self) -> None:
        """The run's cleanup did not complete (interrupted, or it failed part-way): the
        watchdog finishes it, whatever happens to this process next."""
        stdin: IO[bytes] | None = self._process.stdin
        if stdin is not None:
            with contextlib.suppress(OSError):
                stdin.close()

    def stand_down(self) -> None:
        """The run's cleanup is complete: the watchdog exits without touching anything."""
        stdin: IO[bytes] | None = self._process.stdin
        if stdin is not None:
            try:
                stdin.write(DONE)
                stdin.close()
            except OSError:
                pass  # it died already; nothing it could do for us
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
        self.log_path.unlink(missing_ok=True)


class Beating:
    """The watchdog's side of the heartbeat: one connection, renewed beats."""

    def __init__(self, heart_json: str) -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s watchdog %(message)s")
        self.heart = Heart.from_json(heart_json)
        self.serial = 0
        self._engine: Engine | None = None

    def renew(self) -> None:
        self.serial += 1
        try:
            if self._engine is None:
                self._engine = _connect(self.heart.timeout)
            self.heart.beat(self._engine, self.serial, renew=True)
        except Exception as exc:  # a missed beat must never end the watchdog
            log.warning("heartbeat of run %s missed: %s", self.heart.run_id, exc)
            self._engine = None


def _connect(timeout: float) -> Engine:
    """The engine the run uses (DOCKER_HOST or the CLI context): the watchdog has the run's
    environment, so ``connect_client`` resolves it the same way; its version is not asked."""
    return Engine.connect_unprobed(timeout)


def reap(heart_json: str) -> int:
    """The run died, or its cleanup was cut short: remove everything labelled with it (and,
    once that worked, the run's state files and this log)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s watchdog %(message)s")
    from .reaper import reap_until_quiet

    run_id = Heart.from_json(heart_json).run_id
    log.info("run %s ended without standing down: reaping", run_id)
    engine = _connect(60)
    result = reap_until_quiet(engine, run_id)
    log.info("removed %d: %s", len(result.removed), ", ".join(result.removed))
    for failure in result.failed.values():
        log.warning("could not remove %s", failure)
    if not result.failed:
        forget_run_state(run_id)
    return 1 if result.failed else 0

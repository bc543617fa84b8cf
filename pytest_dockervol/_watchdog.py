"""The watchdog: a small process that outlives a killed run and removes what it created.

The run's first process starts it in a new session (so killing the run's process
group spares it) with a pipe on its stdin. The run writes ``done`` only once its cleanup
is complete; any other end of the pipe (SIGKILL, OOM, a CI cancel, a cleanup cut short
by a second Ctrl-C) means the run's resources may be left, and the watchdog sweeps the
run's labelled resources at once. No image, no helper container.

    python -c <_LAUNCHER> RUN_ID
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
from typing import IO

from ._lease import forget_run_state, watchdog_log

DONE = b"done"
log = logging.getLogger("pytest_dockervol.watchdog")
#: The watchdog waits in a bare interpreter: the package (docker, pytest) is imported only
#: when there is something to reap, so a clean run's stand-down costs a few milliseconds.
_LAUNCHER = (
    "import sys\n"
    "if sys.stdin.buffer.read() == b'done':\n"
    "    sys.exit(0)\n"
    "from pytest_dockervol._watchdog import reap\n"
    "sys.exit(reap(sys.argv[1]))\n"
)


class Watchdog:
    """The run's handle on its watchdog process."""

    def __init__(self, run_id: str) -> None:
        self.log_path = watchdog_log(run_id)
        with open(self.log_path, "ab") as log_file:
            self._process = subprocess.Popen(
                [sys.executable, "-c", _LAUNCHER, run_id],
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


def reap(run_id: str) -> int:
    """The run died, or its cleanup was cut short: remove everything labelled with it (and,
    once that worked, the run's state files and this log)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s watchdog %(message)s")
    import docker

    from ._reaper import reap_until_quiet

    log.info("run %s ended without standing down: reaping", run_id)
    client = docker.from_env()
    result = reap_until_quiet(client.api, run_id)
    log.info("removed %d: %s", len(result.removed), ", ".join(result.removed))
    for failure in result.failed.values():
        log.warning("could not remove %s", failure)
    if not result.failed:
        forget_run_state(run_id)
    return 1 if result.failed else 0

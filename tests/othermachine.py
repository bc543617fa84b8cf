"""Another machine on the same engine, for the heartbeat tests: pytest in its own UTS and
pid namespace (``unshare --uts --pid --fork --mount-proc``), with another hostname and its
own TMPDIR, so it shares no lease, pid or state directory with this machine; only the
engine. Making it vanish kills its namespace's first process, and with it every process
there (pytest, its xdist workers, its watchdog) at once, as a machine that is switched off.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from conftest import INNER_RUN_IDS, read_run_id, wait_for

HOSTNAME = "pdv-other-machine"
#: Sets the hostname, then runs pytest as a child (not exec): the shell is the namespace's
#: first process, so its end is the machine's end.
_BOOT = 'hostname "$1" && shift && "$@"'


@dataclass
class OtherMachine:
    proc: subprocess.Popen[bytes]
    signals: Path
    log: Path
    run_id: str = ""
    pid_namespace: str = ""

    def signal(self, name: str) -> None:
        (self.signals / name).touch()

    def wait_signal(self, name: str, timeout: float = 120) -> None:
        """Wait for the other machine's test to touch ``name`` (it fails if pytest ends)."""

        def arrived() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"the other machine's run ended:\n{self.log.read_text()}")
            return (self.signals / name).exists()

        wait_for(arrived, timeout, f"the other machine's {name!r}")

    def processes(self) -> list[int]:
        """This machine's pids of the processes that live in the other machine."""
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if os.readlink(entry / "ns" / "pid") == self.pid_namespace:
                        found.append(int(entry.name))
        return found

    def stopped(self) -> list[int]:
        """Its processes in state T (stopped by a signal)."""
        found = []
        for pid in self.processes():
            with contextlib.suppress(OSError):
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
                if state == "T":
                    found.append(pid)
        return found

    def vanish(self) -> None:
        """Switch the machine off: SIGKILL to its first process ends every process in it."""
        os.kill(_first_process(self.proc.pid), signal.SIGKILL)
        self.proc.wait(timeout=30)
        wait_for(lambda: self.processes() == [], 30, "the other machine's processes to end")

    def finish(self, timeout: float = 120) -> str:
        """Wait for its pytest to end; what it printed (its exit code must be 0)."""
        code = self.proc.wait(timeout=timeout)
        output = self.log.read_text()
        assert code == 0, output
        return output


def _first_process(unshare_pid: int) -> int:
    """The namespace's pid 1, as this machine numbers it: unshare's only child."""
    children = Path(f"/proc/{unshare_pid}/task/{unshare_pid}/children")
    wait_for(lambda: children.read_text().split() != [], 30, "unshare to fork")
    return int(children.read_text().split()[0])


@contextlib.contextmanager
def other_machine(
    tmp_path: Path, source: str, *pytest_args: str, env: dict[str, str] | None = None
) -> Iterator[OtherMachine]:
    """Start ``pytest PYTEST_ARGS`` on ``source`` (a test module) on the other machine; its
    test touches files in ``$SIGNALS`` and waits for files there. However the block ends,
    the machine is switched off (the caller removes what its run left)."""
    home = tmp_path / "other-machine"
    signals = home / "signals"
    for directory in (home / "tmp", signals):
        directory.mkdir(parents=True)
    (home / "test_other.py").write_text(source)
    log = home / "log.txt"
    environment = {
        **os.environ,
        "TMPDIR": str(home / "tmp"),
        "SIGNALS": str(signals),
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    command = ["unshare", "--uts", "--pid", "--fork", "--mount-proc", "--kill-child"]
    command += ["sh", "-c", _BOOT, "boot", HOSTNAME]
    command += [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *pytest_args]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            command,
            cwd=home,
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    machine = OtherMachine(proc, signals, log)
    try:
        first = _first_process(proc.pid)
        machine.pid_namespace = os.readlink(f"/proc/{first}/ns/pid")
        machine.run_id = read_run_id(log)
        INNER_RUN_IDS.append(machine.run_id)
        yield machine
    finally:
        if proc.poll() is None:
            machine.vanish()

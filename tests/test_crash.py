"""Crash safety: kill -9 of a whole run, a worker that dies mid-test, abandoned runs."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import uuid
from pathlib import Path

import docker
import docker.errors
from conftest import (
    InnerPytest,
    is_podman,
    killable_run,
    leftovers,
    remove_run,
    wait_for,
)

from pytest_dockervol._runs.lease import forget_run_state, watchdog_log

HOLD = r"""
import os, pathlib, time
from docker.types import Mount

def test_hold(named_volume, anonymous_volume, host_volume, run_container, volume_factory, worker_id):
    named_volume.seed({"a": "1"})
    volume_factory.shared("shared-key", seed={"s": "1"})
    run_container(os.environ["DOCKERVOL_IMAGE"], ["sleep", "300"],
                  mounts=[named_volume.mount("/n"), Mount("/anon", None, type="volume")])
    (pathlib.Path(os.environ["READY_DIR"]) / worker_id).touch()
    time.sleep(300)
"""


def test_kill_9_of_the_process_group_is_reaped_by_the_watchdog(
    docker_client: docker.DockerClient, image: str, tmp_path: Path
) -> None:
    with killable_run(tmp_path, HOLD, image) as run:
        run.wait_until_ready()
        before = leftovers(docker_client, run.run_id)
        # 2 workers x (named, anonymous, 2 helpers, container) + 1 shared volume (+ helpers);
        # Podman labels no anonymous volume: those go with their labelled anchors.
        assert len(before) >= (8 if is_podman(docker_client) else 10), before
    latency = wait_for(lambda: leftovers(docker_client, run.run_id) == [], 60, "the watchdog")
    print(f"reaped {len(before)} resources {latency:.2f}s after kill -9")


def test_worker_dying_mid_test_is_reaped_by_the_controller(inner: InnerPytest) -> None:
    inner.pytester.makepyfile(
        r"""
import os
def test_crash(named_volume, anonymous_volume, run_container, worker_id):
    run_container(os.environ["DOCKERVOL_IMAGE"], ["sleep", "300"], mounts=[named_volume.mount("/n")])
    if worker_id == "gw0":
        os._exit(3)
"""
    )
    run = inner.run("-n", "2", "--dist", "each", "--max-worker-restart=0")
    run.result.stdout.fnmatch_lines(["*worker gw0 crashed; removed its * resource(s)*"])
    assert run.leftovers() == []


def _fake_run_labels(run_id: str, namespace: str, pid: int, created: float) -> dict[str, str]:
    return {
        "pytest-dockervol.owner": "pytest-dockervol",
        "pytest-dockervol.run": run_id,
        "pytest-dockervol.worker": "main",
        "pytest-dockervol.kind": "named",
        "pytest-dockervol.session-pid": str(pid),
        "pytest-dockervol.host": "somewhere",
        "pytest-dockervol.namespace": namespace,
        "pytest-dockervol.created": f"{created:.3f}",
    }


def test_next_run_reaps_dead_runs_and_spares_everything_else(inner: InnerPytest) -> None:
    """Leftovers of a run whose watchdog also died are reaped when the next run starts;
    other people's volumes (even plugin-like names) and possibly-live runs survive."""
    from pytest_dockervol._engine.labels import process_namespace

    client = inner.client
    finished = subprocess.Popen(["true"])
    finished.wait()
    dead_pid = finished.pid  # reaped by wait(): no process has this pid now
    suffix = uuid.uuid4().hex[:8]  # unique even when two copies of this suite share the engine
    ns = process_namespace()
    now = time.time()
    made = {
        # a run of this machine whose process is gone: reaped
        "dead": client.volumes.create(
            f"pdv-dead{suffix}-main-x-1",
            labels=_fake_run_labels(f"dead{suffix}" * 2, ns, dead_pid, now - 5),
        ),
        # another machine's run, recent: may be alive, spared
        "remote-recent": client.volumes.create(
            f"pdv-remote{suffix}-main-x-1",
            labels=_fake_run_labels(f"rem{suffix}" * 2, "other-ns", 1, now - 60),
        ),
        # another machine's run, idle for two days: abandoned, reaped
        "remote-old": client.volumes.create(
            f"pdv-old{suffix}-main-x-1",
            labels=_fake_run_labels(f"old{suffix}" * 2, "other-ns", 1, now - 48 * 3600),
        ),
        # someone else's volumes: never touched, whatever the name looks like
        "lookalike": client.volumes.create(f"pdv-{suffix}-main-test_x-1"),
        "labelled-not-ours": client.volumes.create(
            f"other-{suffix}", labels={"pytest-dockervol.run": "x"}
        ),
    }
    try:
        inner.pytester.makepyfile("def test_touch(named_volume):\n    pass\n")
        run = inner.run("-rA")
        run.result.assert_outcomes(passed=1)
        present = {v.name for v in client.volumes.list()}
        survived = {key for key, vol in made.items() if vol.name in present}
        assert survived == {"remote-recent", "lookalike", "labelled-not-ours"}
        run.result.stdout.fnmatch_lines(["*pytest-dockervol: reaped*"])
    finally:
        for vol in made.values():
            with contextlib.suppress(docker.errors.NotFound):  # reaped already, as intended
                vol.remove()


# -- watchdog logs ---------------------------------------------------------------------------


def test_the_watchdog_log_of_a_killed_run_goes_once_it_is_reaped(
    docker_client: docker.DockerClient, image: str, tmp_path: Path
) -> None:
    with killable_run(tmp_path, HOLD, image) as run:
        run.wait_until_ready()
        log = watchdog_log(run.run_id)
        assert log.exists()
    wait_for(lambda: leftovers(docker_client, run.run_id) == [], 60, "the watchdog")
    wait_for(lambda: not log.exists(), 60, "the watchdog log to go")


def _lease_holder(run_id: str, *, die: bool) -> subprocess.Popen[bytes]:
    """A process holding ``run_id``'s lease: alive, or killed (its lease then reads dead)."""
    code = (
        "import time; from pytest_dockervol._runs.lease import RunLease; lease = RunLease({!r}); "
    )
    code += "lease.acquire(); print('held', flush=True); time.sleep(300)"
    holder = subprocess.Popen([sys.executable, "-c", code.format(run_id)], stdout=subprocess.PIPE)
    assert holder.stdout is not None
    with holder.stdout:  # it prints nothing more
        assert holder.stdout.readline() == b"held\n"
    if die:
        holder.kill()
        holder.wait()
    return holder


def test_the_reaper_removes_logs_of_runs_over_and_keeps_those_of_live_ones(
    inner: InnerPytest,
) -> None:
    dead, live, gone = (uuid.uuid4().hex for _ in range(3))
    _lease_holder(dead, die=True)
    holder = _lease_holder(live, die=False)
    labels = {"pytest-dockervol.owner": "pytest-dockervol", "pytest-dockervol.run": dead}
    inner.client.volumes.create(f"pdv-{dead[:8]}-main-test_logs-1", labels=labels)
    logs = {run_id: watchdog_log(run_id) for run_id in (dead, live, gone)}
    for log in logs.values():
        log.write_text("a watchdog's log\n")
    try:
        inner.pytester.makepyfile("def test_touch(named_volume):\n    pass\n")
        inner.run().result.assert_outcomes(passed=1)
        assert leftovers(inner.client, dead) == []  # reaped: its lease was free
        assert not logs[dead].exists()
        assert not logs[gone].exists()  # no lease left: its run is over
        assert logs[live].exists()
    finally:
        holder.kill()
        holder.wait()
        remove_run(inner.client, dead)
        for run_id in (dead, live, gone):
            forget_run_state(run_id)

"""Kept runs (--dockervol-keep), a cleanup cut short by a second Ctrl-C, and the small CLI
and report items: a closed pipe, plain run states, one line per failed removal, and
watchdog logs of dead runs."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import docker.errors
import pytest
from conftest import (
    INNER_RUN_IDS,
    InnerPytest,
    cli,
    is_podman,
    leftovers,
    read_run_id,
    remove_run,
    wait_for,
)

from pytest_dockervol._engine.labels import LABEL_KIND, LABEL_LAYER, LABEL_RUN
from pytest_dockervol._runs.cli import run_state
from pytest_dockervol._runs.lease import forget_run_state, lease_state
from pytest_dockervol._runs.reaper import Resource
from pytest_dockervol._runs.report import kept_report

# -- --dockervol-keep ------------------------------------------------------------------------

KEEP = r"""
import os

def test_keep(volume_factory, named_volume, anonymous_volume, host_volume, run_container):
    named_volume.seed({"a.txt": "named"})
    anonymous_volume.seed({"b.txt": "anonymous"})
    assert named_volume.read_text("a.txt") == "named"
    assert anonymous_volume.files() == ["b.txt"]
    clone = volume_factory.clone_of(named_volume)
    assert clone.read_text("a.txt") == "named"
    volume_factory.clone_of(anonymous_volume)
    clone.clone()
    named_volume.snapshot()
    volume_factory.shared("kept", seed={"s.txt": "shared"}).files()
    host_volume.seed({"h.txt": "host"})
    run_container(os.environ["DOCKERVOL_IMAGE"], ["true"])  # uses no volume of the run
"""


def _kept_section(stdout: str) -> list[list[str]]:
    """The kept list's lines, split into kind, name and what follows."""
    lines = stdout.split("pytest-dockervol: kept (--dockervol-keep)", 1)[1].splitlines()[1:]
    end = next(i for i, line in enumerate(lines) if line.startswith("remove the whole run"))
    return [line.split(None, 2) for line in lines[:end]]


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["plain", "xdist"])
def test_kept_volumes_are_not_pinned_and_listed_with_kinds(
    inner: InnerPytest, xdist: list[str]
) -> None:
    inner.pytester.makepyfile(KEEP)
    run = inner.run("--dockervol-keep", *xdist)
    client = inner.client
    try:
        run.result.assert_outcomes(passed=1)
        stdout = run.result.stdout.str()
        command = f"remove the whole run with: pytest-dockervol rm --run {run.run_id}"
        assert command in stdout.splitlines()
        kept = _kept_section(stdout)
        kinds = [line[0] for line in kept]
        names = [line[1] for line in kept]
        # Podman labels no anonymous volume: its helper stays, as the one trace of it.
        names += [line[2].split()[1].rstrip(":") for line in kept if line[0] == "helper"]
        expected = {"named", "clone", "snapshot", "shared", "container", "host"}
        expected.add("helper" if is_podman(client) else "anonymous")  # Podman: no labels
        assert expected <= set(kinds), kept
        assert kinds.count("clone") == 3
        for i, line in enumerate(kept):
            if line[0] == "clone":
                assert line[2].split()[1] in names, "a clone names its source"
            if line[0] == "layer":  # right after the copy-on-write volume that reads it
                assert line[2] == f"of clone {kept[i - 1][1]}"
        assert ("layer" in kinds) == ("(copy-on-write)" in stdout)
        # No helper is left to pin a volume (Podman's anonymous anchors aside) ...
        helpers = client.api.containers(
            all=True, filters={"label": [f"{LABEL_RUN}={run.run_id}", f"{LABEL_KIND}=helper"]}
        )
        assert len(helpers) == (1 if is_podman(client) else 0)
        # ... and the run is listed as kept, with the command that removes it.
        listed = cli("ls").stdout
        assert (
            f"kept: ended with --dockervol-keep; remove it with `pytest-dockervol rm --run {run.run_id}`"
            in listed
        )
        # Plain `docker volume rm` works for every kept volume: clones, layers, the rest.
        volumes = [ln for ln in kept if ln[0] not in ("container", "helper", "host")]
        rank = {"clone": 0, "layer": 1}
        for _kind, name, *_ in sorted(volumes, key=lambda ln: rank.get(ln[0], 2)):
            client.volumes.get(name).remove()
        # The printed command removes the rest (the kept test container).
        removed = cli(*command.split(": ", 1)[1].split()[1:])
        assert removed.returncode == 0, removed.stdout + removed.stderr
        assert run.leftovers() == []
    finally:
        remove_run(client, run.run_id)
        forget_run_state(run.run_id)


@pytest.mark.parametrize("reaper", ["the next run", "pytest-dockervol rm"])
def test_a_kept_run_removed_by_hand_leaves_nothing(inner: InnerPytest, reaper: str) -> None:
    """The user removes what the kept list names with plain `docker volume rm`: the run's
    kept marker (listed too, with what it is for) goes at the next run's start, or with
    `pytest-dockervol rm`, and so does the run's lease on this machine."""
    inner.pytester.makepyfile(test_keep="def test_keep(named_volume):\n    named_volume.files()\n")
    run = inner.run("--dockervol-keep")
    client = inner.client
    try:
        run.result.assert_outcomes(passed=1)
        kept = _kept_section(run.result.stdout.str())
        marker = [line for line in kept if line[0] == "kept-marker"]
        assert [line[1] for line in marker] == [f"pdv-{run.run_id[:8]}-kept"], kept
        assert marker[0][2].startswith("tells later runs, on any machine, to leave these alone")
        # Its lease here reads "kept" until a run, on any engine, finds nothing of it on
        # its own engine: the marker, not the lease, is what keeps the run elsewhere.
        for _kind, name, *_ in (line for line in kept if line[0] == "named"):
            client.volumes.get(name).remove()  # as the user would: `docker volume rm NAME`
        # Any run on the engine may take it from here on (another suite's, at its start).
        listed = cli("ls").stdout
        if f"run {run.run_id}" in listed:
            over = "over: kept, and nothing but its kept marker is left"
            assert f"{over}\n  nothing but its kept marker\n" in listed, listed
        if reaper == "pytest-dockervol rm":
            done = cli("rm")
            assert done.returncode == 0, done.stdout + done.stderr
        else:
            inner.pytester.makepyfile(test_keep="def test_next(named_volume):\n    pass\n")
            inner.run().result.assert_outcomes(passed=1)
        assert run.leftovers() == []
        assert lease_state(run.run_id) == "unknown"
    finally:
        remove_run(client, run.run_id)
        forget_run_state(run.run_id)


def test_kept_report_lists_kinds_in_an_order_docker_volume_rm_can_follow() -> None:
    def volume(name: str, kind: str, of: str = "", layer: str = "", *needs: str) -> Resource:
        labels = {LABEL_KIND: kind, **{f"pytest-dockervol.needs.{n}": "" for n in needs}}
        if of:
            labels[
                "pytest-dockervol.snapshot-of"
                if kind == "snapshot"
                else "pytest-dockervol.clone-of"
            ] = of
        if layer:
            labels[LABEL_LAYER] = layer
        return Resource("volume", name, labels)

    resources = [
        volume("src", "named"),
        volume("anon", "anonymous"),
        volume("l1", "layer"),
        volume("c1", "clone", "src", "l1", "src", "l1"),
        volume("l2", "layer"),
        volume("c2", "clone", "c1", "l2", "c1", "src", "l1", "l2"),
        volume("full", "clone", "anon"),
        volume("snap", "snapshot", "src"),
        Resource("container", "f" * 64, {LABEL_KIND: "container", "pytest-dockervol.creator": "t"}),
        volume("pdv-rrrrrrrr-kept", "kept-marker"),
        volume("beat", "heartbeat"),
    ]
    assert kept_report("r" * 32, resources, ["host      /tmp/h"]) == [
        "container ffffffffffff  from t",
        "clone     c2  of c1 (copy-on-write)",
        "layer     l2  of clone c2",
        "clone     c1  of src (copy-on-write)",
        "layer     l1  of clone c1",
        "named     src",
        "anonymous anon",
        "clone     full  of anon",
        "snapshot  snap  of src",
        "host      /tmp/h",
        "kept-marker pdv-rrrrrrrr-kept  tells later runs, on any machine, to leave these alone; "
        "removed by the next run once nothing else is left",
        f"remove the whole run with: pytest-dockervol rm --run {'r' * 32}",
    ]
    assert kept_report("r" * 32, [], ["host      /tmp/h"]) == ["host      /tmp/h"]


# -- a second Ctrl-C during cleanup ------------------------------------------------------------

#: The second Ctrl-C: each process sends it to itself on the N-th volume removal of its
#: cleanup (INTERRUPT_AT, or INTERRUPT_AT_WORKER in an xdist worker), so it lands during
#: cleanup every time. The run's first process then stays alive (its pid with it) until
#: the outer test has looked, so no other run's reaper may finish the job: the watchdog must.
INTERRUPTING_CONFTEST = r"""
import os, pathlib, signal, time
import docker.api.client
import pytest

_remove_volume = docker.api.client.APIClient.remove_volume
_WORKER = bool(os.environ.get("PYTEST_XDIST_WORKER"))
_AT = int(os.environ["INTERRUPT_AT_WORKER" if _WORKER else "INTERRUPT_AT"])
_removals = None  # counted from the start of the cleanup
HOLD = pathlib.Path(os.environ["HOLD_DIR"])

@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish():
    global _removals
    _removals = 0

def remove_volume(self, name, force=False):
    global _removals
    if _removals is not None:
        _removals += 1
        if _removals == _AT:
            os.kill(os.getpid(), signal.SIGINT)
    return _remove_volume(self, name, force)

docker.api.client.APIClient.remove_volume = remove_volume

@pytest.hookimpl(trylast=True)
def pytest_unconfigure():
    if _WORKER:
        return
    (HOLD / "ended").touch()
    for _ in range(1200):  # at most 2 minutes
        if (HOLD / "go").exists():
            break
        time.sleep(0.1)
"""

MANY = r"""
import os, pathlib, time

def test_many(volume_factory, worker_id):
    for _ in range(150):
        volume_factory.named()
    (pathlib.Path(os.environ["READY_DIR"]) / worker_id).touch()
    time.sleep(300)
"""


@pytest.mark.parametrize(
    ("args", "workers", "controller_at"),
    [([], 1, "20"), (["-n", "2", "--dist", "each"], 2, "1")],
    ids=["plain", "xdist"],
)
def test_second_ctrl_c_during_cleanup_leaves_nothing(
    docker_client: docker.DockerClient,
    image: str,
    tmp_path: Path,
    args: list[str],
    workers: int,
    controller_at: str,
) -> None:
    """Without xdist the 20th removal is interrupted; with it, each worker's 20th and the
    controller's final sweep (its first removal): the watchdog finishes the cleanup."""
    (tmp_path / "conftest.py").write_text(INTERRUPTING_CONFTEST)
    (tmp_path / "test_many.py").write_text(MANY)
    ready, hold = tmp_path / "ready", tmp_path / "hold"
    ready.mkdir()
    hold.mkdir()
    # Not an xdist worker's variables (when this suite itself runs with -n): the inner
    # conftest tells its controller from its workers by PYTEST_XDIST_WORKER.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST_")}
    env |= {"DOCKERVOL_IMAGE": image, "PYTHONUNBUFFERED": "1", "INTERRUPT_AT": controller_at}
    env |= {"READY_DIR": str(ready), "HOLD_DIR": str(hold), "INTERRUPT_AT_WORKER": "20"}
    log = tmp_path / "log.txt"
    with open(log, "wb") as out:  # its own process group: a terminal's Ctrl-C reaches all
        proc = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    run_id = ""
    try:
        run_id = read_run_id(log)
        INNER_RUN_IDS.append(run_id)
        wait_for(lambda: len(list(ready.iterdir())) == workers, 120, "the volumes")
        os.killpg(proc.pid, signal.SIGINT)  # the first Ctrl-C: the run cleans up
        wait_for((hold / "ended").exists, 120, "the run to end")
        assert "KeyboardInterrupt" in log.read_text()
        wait_for(lambda: leftovers(docker_client, run_id) == [], 60, "the watchdog")
    finally:
        (hold / "go").touch()
        try:
            proc.wait(timeout=120)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            if run_id:
                remove_run(docker_client, run_id)


# -- the command line --------------------------------------------------------------------------


def _fake_volumes(client: docker.DockerClient, run_id: str, count: int) -> None:
    """``count`` clones of a recent run on another machine: nobody reaps them meanwhile."""
    labels = {
        f"pytest-dockervol.{key}": value
        for key, value in [
            ("owner", "pytest-dockervol"),
            ("run", run_id),
            ("worker", "main"),
            ("kind", "clone"),
            ("session-pid", "1"),
            ("host", "elsewhere"),
            ("namespace", "other-ns"),
            ("created", f"{time.time():.3f}"),
        ]
    }
    prefix = f"pdv-{run_id[:8]}-main-test_ls_into_a_pipe_closed_early"

    def create(i: int) -> None:
        source = {"pytest-dockervol.clone-of": f"{prefix}-source-{i}"}
        client.api.create_volume(f"{prefix}-{i}", labels={**labels, **source})

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, range(count)))


def test_ls_into_a_pipe_closed_early_ends_quietly(docker_client: docker.DockerClient) -> None:
    run_id = uuid.uuid4().hex
    try:
        _fake_volumes(docker_client, run_id, 700)
        full = cli("ls")
        assert full.returncode == 0, full.stderr
        assert len(full.stdout) > 100_000, "the listing must overflow the pipe's buffer"
        assert (
            f"run {run_id}  host elsewhere  running: on host elsewhere; "
            "counted as over after 24 h idle"
        ) in full.stdout.splitlines()
        # `pytest-dockervol ls | head -1`: the reader takes one line and goes away.
        proc = subprocess.Popen(
            [sys.executable, "-m", "pytest_dockervol", "ls"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None
        assert proc.stderr is not None
        assert proc.stdout.readline().startswith(b"run ")
        proc.stdout.close()
        with proc.stderr:
            stderr = proc.stderr.read().decode()
        assert proc.wait(timeout=120) == 141
        assert stderr == ""
    finally:
        remove_run(docker_client, run_id)


def test_run_states_are_plain_words() -> None:
    assert run_state(True, "dead") == run_state(True, "unknown") == "over"
    assert run_state(False, "kept") == "kept"
    assert run_state(False, "alive") == run_state(False, "unknown") == "running"


# -- the cleanup report --------------------------------------------------------------------------


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["plain", "xdist"])
def test_a_volume_a_foreign_container_holds_is_reported_once(
    inner: InnerPytest, xdist: list[str]
) -> None:
    inner.pytester.makepyfile(
        """
        import os
        def test_leaves_container(named_volume, dockervol_client):
            dockervol_client.containers.create(
                os.environ["DOCKERVOL_IMAGE"], ["true"], name=named_volume.name + "-user",
                mounts=[named_volume.mount("/d")])
        """
    )
    run = inner.run("-rA", *xdist)
    left = [item.split(" ", 1)[1] for item in run.leftovers() if item.startswith("volume ")]
    try:
        assert len(left) == 1
        report = run.result.stdout.str().split("pytest-dockervol: could not remove ==", 1)[1]
        report = report.split("\n==", 1)[0]
        mentions = [line for line in report.splitlines() if left[0] in line]
        assert len(mentions) == 1, report
        assert "still in use by container(s) not created by pytest-dockervol" in mentions[0]
    finally:  # the test made the foreign container: it removes it, and then the volume
        for name in left:
            for user in inner.client.containers.list(all=True, filters={"volume": name}):
                user.remove(force=True)
            inner.client.volumes.get(name).remove()

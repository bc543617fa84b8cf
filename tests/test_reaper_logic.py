"""Pure logic of crash reaping: verdicts, leases, names. No Docker."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_dockervol import LabelError, VolumeNameError
from pytest_dockervol._engine.labels import (
    LABEL_CREATED,
    LABEL_NAMESPACE,
    LABEL_OWNER,
    LABEL_RUN,
    LABEL_SESSION_PID,
    RunIdentity,
    check_user_labels,
    check_volume_name,
    slugify,
)
from pytest_dockervol._runs.lease import RunLease, forget_run_state, lease_state
from pytest_dockervol._runs.reaper import Resource, RunSummary, group_by_run, removal_order, verdict

ME = RunIdentity(run_id="a" * 32, worker="main", namespace="boot:1", session_pid=10)
NOW = 1_000_000.0
DAY = 24 * 3600.0


def _run(
    namespace: str = "boot:1", pid: int = 99, age: float = 5.0, run_id: str = "b" * 32
) -> RunSummary:
    labels = {
        LABEL_OWNER: "pytest-dockervol",
        LABEL_RUN: run_id,
        LABEL_NAMESPACE: namespace,
        LABEL_SESSION_PID: str(pid),
        LABEL_CREATED: str(NOW - age),
    }
    return RunSummary(run_id, [Resource("volume", "v", labels)])


@pytest.mark.parametrize(
    ("run", "lease", "alive", "over", "why"),
    [
        (_run(run_id="a" * 32), "dead", False, False, "this run"),
        (_run(), "alive", False, False, "its lease is held"),
        (_run(), "kept", False, False, "ended with --dockervol-keep"),
        (_run(age=10 * DAY), "kept", False, False, "--dockervol-keep"),
        (_run(), "dead", True, True, "its lease is free"),
        (_run(), "unknown", False, True, "process 99 is gone"),
        (_run(), "unknown", True, False, "its process 99 is alive"),
        (_run(namespace="boot:2"), "unknown", False, False, "on host ?; counted as over after 24"),
        (_run(namespace="boot:2", age=2 * DAY), "unknown", True, True, "idle for 48.0 h"),
        (_run(age=2 * DAY), "unknown", True, True, "idle"),
    ],
)
def test_verdict(run: RunSummary, lease: str, alive: bool, over: bool, why: str) -> None:
    decided, reason = verdict(run, ME, lease=lease, now=NOW, max_age=DAY, is_alive=lambda _: alive)
    assert decided is over
    assert why in reason


def test_unknown_namespace_never_trusts_pids() -> None:
    me = RunIdentity(run_id="a" * 32, worker="main", namespace="unknown")
    run = _run(namespace="unknown")
    assert (
        verdict(run, me, lease="unknown", now=NOW, max_age=DAY, is_alive=lambda _: False)[0]
        is False
    )


def test_newest_resource_decides_age() -> None:
    run = _run(age=3 * DAY)
    run.resources.append(_run(age=60).resources[0])
    assert (
        verdict(run, ME, lease="unknown", now=NOW, max_age=DAY, is_alive=lambda _: True)[0] is False
    )


def test_group_by_run() -> None:
    runs = group_by_run(
        [
            *_run(run_id="x" * 32).resources,
            *_run(run_id="y" * 32).resources,
            *_run(run_id="x" * 32).resources,
        ]
    )
    assert {k: len(v.resources) for k, v in runs.items()} == {"x" * 32: 2, "y" * 32: 1}


def test_lease_alive_then_dead_after_kill(tmp_path: Path) -> None:
    run_id = "lease" + str(time.monotonic_ns())
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys,time; from pytest_dockervol._runs.lease import RunLease; "
            f"lease = RunLease({run_id!r}); lease.acquire(); print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"held\n"
        assert lease_state(run_id) == "alive"
    finally:
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()
    assert lease_state(run_id) == "dead"
    forget_run_state(run_id)
    assert lease_state(run_id) == "unknown"


def test_lease_released_cleanly_or_kept() -> None:
    lease = RunLease("clean" + str(time.monotonic_ns()))
    lease.acquire()
    lease.release()
    assert lease_state(lease.run_id) == "unknown"
    kept = RunLease("kept" + str(time.monotonic_ns()))
    kept.acquire()
    kept.release(kept=True)
    assert lease_state(kept.run_id) == "kept"
    forget_run_state(kept.run_id)


@pytest.mark.parametrize("name", ["ab", "a.b-c_d", "A1", "0x"])
def test_valid_volume_names(name: str) -> None:
    assert check_volume_name(name) == name


@pytest.mark.parametrize("name", ["a", "", "-ab", ".ab", "a b", "a/b", "ä"])
def test_invalid_volume_names(name: str) -> None:
    with pytest.raises(VolumeNameError, match="at least 2 characters"):
        check_volume_name(name)


def test_generated_names_are_valid_and_distinct() -> None:
    identity = RunIdentity(run_id="c" * 32, worker="gw1")
    names = {identity.volume_name("test_x[ä/ü 1]", n) for n in range(50)}
    assert len(names) == 50
    assert all(name.startswith("pdv-cccccccc-gw1-test_x-1-") for name in names)
    assert slugify("///") == "vol"


def test_user_labels_cannot_forge_ownership() -> None:
    assert check_user_labels({"team": "db"}) == {"team": "db"}
    with pytest.raises(LabelError, match="reserved"):
        check_user_labels({"pytest-dockervol.owner": "pytest-dockervol"})
    with pytest.raises(LabelError, match="strings"):
        check_user_labels({"n": 1})  # type: ignore[dict-item]


def test_removal_order_puts_readers_before_what_they_read() -> None:
    """A clone of a clone needs more volumes than the clone, which needs more than its
    layer and its source: removals go containers, grandchild, child, then the rest."""
    needs = "pytest-dockervol.needs."
    source = Resource("volume", "source", {})
    layer1 = Resource("volume", "layer1", {})
    child = Resource("volume", "child", {needs + "source": "", needs + "layer1": ""})
    layer2 = Resource("volume", "layer2", {})
    grandchild = Resource(
        "volume",
        "grandchild",
        {needs + n: "" for n in ("child", "source", "layer1", "layer2")},
    )
    helper = Resource("container", "helper", {})
    order = [r.name for r in removal_order([source, layer1, child, helper, layer2, grandchild])]
    assert order[:3] == ["helper", "grandchild", "child"]
    assert set(order[3:]) == {"source", "layer1", "layer2"}

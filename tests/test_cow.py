"""Copy-on-write clones and restores: overlay volumes over their sources, checked from the
outside with busybox and the engine; sources that stay valid; crash cleanup with layers."""

from __future__ import annotations

import json
from pathlib import Path

import docker
import pytest
from conftest import InnerPytest, InnerRun, is_podman, killable_run, leftovers, wait_for

INNER = r"""
import os
import docker
import pytest
from pytest_dockervol import ClonesAliveError, VolumeRemovedError
import inner_helpers

CLIENT = docker.from_env()
IS_PODMAN = inner_helpers.is_podman(CLIENT)
COW = not IS_PODMAN and EXPECT_COW


def sh(volume_factory, script, *volumes):
    # inner_helpers.sh, each volume mounted at /0, /1...
    mounts = [v.mount(f"/{i}") for i, v in enumerate(volumes)]
    return inner_helpers.sh(volume_factory.run_container, script, *mounts, remove=True).strip()


# Podman's archive copies give every file the helper's owner (root): only COW keeps them.
ROOT = "999 700" if not IS_PODMAN else "0 700"


def exists(name):
    try:
        CLIENT.api.inspect_volume(name)
        return True
    except docker.errors.NotFound:
        return False


@pytest.fixture
def source(volume_factory):
    src = volume_factory.named(seed={"a.txt": "golden", "d/b.txt": "b", "gone.txt": "x"})
    # A PGDATA-like root: owner 999, mode 0700; clones must show it too.
    sh(volume_factory, "chown 999:999 /0 && chmod 700 /0", src)
    return src


def test_clone_is_isolated_and_keeps_the_root(volume_factory, source):
    clone = source.clone()
    assert clone.copy_on_write is COW
    assert sh(volume_factory, "stat -c '%u %a' /0; cat /0/a.txt", clone) == f"{ROOT}\ngolden"
    sh(volume_factory, "echo changed > /0/a.txt; rm /0/gone.txt; echo new > /0/new", clone)
    assert sorted(clone.files()) == ["a.txt", "d/b.txt", "new"]
    assert sorted(source.files()) == ["a.txt", "d/b.txt", "gone.txt"]
    assert source.read_text("a.txt") == "golden"
    second = volume_factory.clone_of(source)
    assert second.read_text("a.txt") == "golden" and "new" not in second.files()


def test_clone_of_a_clone(volume_factory, source):
    first = source.clone()
    first.seed({"first.txt": "1"})
    second = first.clone()
    assert second.copy_on_write is COW
    second.seed({"second.txt": "2"})
    assert sorted(second.files()) == ["a.txt", "d/b.txt", "first.txt", "gone.txt", "second.txt"]
    assert "second.txt" not in first.files() and "first.txt" not in source.files()
    # Both mounted at once by one container: each sees its own files.
    out = sh(volume_factory, "ls /0 | tr '\n' ' '; echo; ls /1 | tr '\n' ' '", first, second)
    assert [line.split() for line in out.splitlines()] == [
        ["a.txt", "d", "first.txt", "gone.txt"],
        ["a.txt", "d", "first.txt", "gone.txt", "second.txt"],
    ]


def test_sources_stay_valid_while_clones_live(volume_factory, source):
    clone = source.clone()
    grandchild = clone.clone()
    if not COW:
        source.seed({"more": "1"})  # full copies do not read their source
        return
    for volume, reader in ((source, clone.name), (clone, grandchild.name)):
        with pytest.raises(ClonesAliveError, match="read it as their lower layer") as info:
            volume.seed({"x": "y"})
        assert reader in str(info.value) and "\n" not in str(info.value)
        with pytest.raises(ClonesAliveError):
            volume.restore(volume.snapshot())
    # A removal waits for the clones that read the volume, then happens by itself.
    source.remove()
    clone.remove()
    assert source.removed and clone.removed
    assert exists(source.name) and exists(clone.name)
    assert grandchild.read_text("a.txt") == "golden"
    layers = [CLIENT.api.inspect_volume(v.name)["Labels"]["pytest-dockervol.layer"]
              for v in (clone, grandchild)]
    grandchild.remove()
    assert not exists(grandchild.name) and not exists(clone.name) and not exists(source.name)
    assert [n for n in layers if exists(n)] == []


def test_restore_is_copy_on_write_and_repeatable(volume_factory, source):
    work = source.clone()
    snapshot = work.snapshot()
    for round in range(3):
        work.seed({"a.txt": f"round {round}", f"added-{round}": "x"})
        work.restore(snapshot)
        assert work.copy_on_write is COW
        assert sorted(work.files()) == ["a.txt", "d/b.txt", "gone.txt"]
        assert sh(volume_factory, "stat -c '%u %a' /0; cat /0/a.txt", work) == f"{ROOT}\ngolden"
    snapshot.remove()  # the restored volume reads it: it goes when the volume goes
    assert work.read_text("d/b.txt") == "b"
"""


def _run(inner: InnerPytest, *args: str, cow: bool = True) -> InnerRun:
    inner.pytester.makepyfile(test_cow_inner=f"EXPECT_COW = {cow}\n" + INNER)
    run = inner.run("-rfE", *args)
    run.result.assert_outcomes(passed=4)
    assert run.leftovers() == []
    return run


def test_copy_on_write_clones_and_restores(inner: InnerPytest) -> None:
    run = _run(inner, "-n", "2")
    header = "copy-on-write" if not is_podman(inner.client) else "full copy (Podman*"
    run.result.stdout.fnmatch_lines([f"dockervol: clones: {header}*"])


def test_full_copies_when_asked(inner: InnerPytest) -> None:
    run = _run(inner, "--dockervol-clone=copy", cow=False)
    run.result.stdout.fnmatch_lines(["dockervol: clones: full copy (--dockervol-clone=copy)*"])


HOLD = r"""
import os, pathlib, time

def test_hold(volume_factory, run_container, worker_id):
    source = volume_factory.named(seed={"a": "1"})
    clone = source.clone()
    grandchild = clone.clone()
    snapshot = grandchild.snapshot()
    grandchild.restore(snapshot)
    run_container(os.environ["DOCKERVOL_IMAGE"], ["sleep", "300"],
                  mounts=[clone.mount("/c"), grandchild.mount("/g")], network_mode="none")
    (pathlib.Path(os.environ["READY_DIR"]) / worker_id).touch()
    time.sleep(300)
"""


def _mounts_of(run_id: str) -> list[str]:
    short = run_id[:8]
    return [line for line in Path("/proc/mounts").read_text().splitlines() if short in line]


def test_kill_9_leaves_no_clone_layer_or_mount(
    docker_client: docker.DockerClient, image: str, tmp_path: Path
) -> None:
    with killable_run(tmp_path, HOLD, image) as run:
        run.wait_until_ready()
        before = leftovers(docker_client, run.run_id)
        layers = [r for r in before if r.endswith("-layer")]
        if not is_podman(docker_client):
            assert len(layers) == 4, before  # 2 workers x (clone, restored grandchild)
            assert _mounts_of(run.run_id), "the running containers mount the overlays"
    wait_for(lambda: leftovers(docker_client, run.run_id) == [], 90, "the watchdog")
    assert _mounts_of(run.run_id) == []


def test_ls_shows_what_is_a_clone_of_what(inner: InnerPytest) -> None:
    inner.pytester.makepyfile(
        r"""
import subprocess, sys

def test_ls(volume_factory):
    source = volume_factory.named(seed={"a": "1"})
    clone = source.clone()
    out = subprocess.run([sys.executable, "-m", "pytest_dockervol", "ls"],
                         capture_output=True, text=True, check=True).stdout
    line = next(line for line in out.splitlines() if clone.name + " " in line + " ")
    assert f"clone of {source.name}" in line
    assert ("copy-on-write, layer" in line) is clone.copy_on_write
"""
    )
    run = inner.run()
    run.result.assert_outcomes(passed=1)
    assert run.leftovers() == []


def test_the_probe_runs_once_per_engine_and_its_verdict_is_kept(
    inner: InnerPytest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first session on a machine probes the engine; later ones (and xdist workers)
    read the verdict kept in the state directory, so it must be what they act on."""
    monkeypatch.setenv("TMPDIR", str(tmp_path / "state"))
    (tmp_path / "state").mkdir()
    inner.pytester.makepyfile("def test_x(): pass")
    first = inner.run()
    verdicts = next((tmp_path / "state").glob("pytest-dockervol-*/copy-on-write.json"), None)
    if is_podman(inner.client):  # known without a probe
        first.result.stdout.fnmatch_lines(["dockervol: clones: full copy (Podman*"])
        assert verdicts is None
        return
    first.result.stdout.fnmatch_lines(["dockervol: clones: copy-on-write*"])
    assert verdicts is not None
    kept = json.loads(verdicts.read_text())
    assert list(kept.values()) == [""]  # one engine, copy-on-write
    verdicts.write_text(json.dumps(dict.fromkeys(kept, "kept by the test")))
    second = inner.run()
    second.result.stdout.fnmatch_lines(["dockervol: clones: full copy (kept by the test)*"])
    assert first.leftovers() == []
    assert second.leftovers() == []


CROSS = r"""
import os, pathlib, time
import pytest
from pytest_dockervol import ClonesAliveError

SYNC = pathlib.Path(os.environ["SYNC_DIR"])

def wait_for(name):
    deadline = time.monotonic() + 60
    while not (SYNC / name).exists():
        assert time.monotonic() < deadline, f"no {name}"
        time.sleep(0.05)
    return (SYNC / name).read_text()

def test_cross(volume_factory, worker_id):
    shared = volume_factory.shared("cross", seed={"a.txt": "1"})
    if worker_id == "gw0":
        clone = shared.clone()
        (SYNC / "cloned").write_text(f"{clone.name} {clone.copy_on_write}")
        wait_for("tried")
        clone.remove()
        return
    name, cow = wait_for("cloned").split()
    if cow == "True":  # the other worker's overlay reads it: the engine's labels say so
        with pytest.raises(ClonesAliveError, match=name):
            shared.seed({"b.txt": "2"})
    else:
        shared.seed({"b.txt": "2"})
    (SYNC / "tried").touch()
"""


def test_a_volume_another_worker_clones_is_refused_changes(
    inner: InnerPytest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNC_DIR", str(tmp_path))
    inner.pytester.makepyfile(test_cross=CROSS)
    run = inner.run("-n", "2", "--dist", "each")
    run.result.assert_outcomes(passed=2)
    cow = (tmp_path / "cloned").read_text().split()[1] == "True"
    assert cow is not is_podman(inner.client)
    assert run.leftovers() == []

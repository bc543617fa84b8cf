"""clone(), snapshot() and restore(): real volumes copied through the archive API, checked
from the outside with busybox (stat, readlink, md5sum). Each behaviour is one small inner
module, run as full copies and as copy-on-write clones and restores (where the engine offers
them: Podman copies in both runs). The tree and manifest helpers are in inner_helpers.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import InnerPytest, InnerRun, is_podman


@pytest.fixture(params=["copy", "auto"])
def clone_mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def run_inner(inner: InnerPytest, source: str, clone_mode: str, *, passed: int) -> InnerRun:
    """``source`` as the inner module, under ``--dockervol-clone=clone_mode``: all pass and
    leave nothing behind."""
    inner.pytester.makepyfile(test_inner=source)
    run = inner.run(
        "-v",
        "-W",
        "error::pytest_dockervol.DockervolCleanupWarning",
        f"--dockervol-clone={clone_mode}",
    )
    run.result.assert_outcomes(passed=passed)
    assert run.leftovers() == []
    return run


KEEPS_EVERYTHING = r"""
import os
from inner_helpers import MiB, comparable, make_tree, manifest, owner, sh_in


def test_clone_keeps_files_owners_modes_links(named_volume, run_container):
    tree = make_tree(run_container, named_volume, 100)
    before = manifest(run_container, tree)
    clone = tree.clone()
    assert clone.name != tree.name
    after = manifest(run_container, clone)
    assert comparable(after) == comparable(before)
    lines = {line.split(" ", 1)[0]: line for line in after}
    assert lines["."].startswith(f". dir 700 {owner('999:999')} ")  # the volume root itself
    assert lines["./private"].startswith(f"./private dir 700 {owner('999:999')} ")
    assert lines["./private/key"].startswith(f"./private/key file 600 {owner('999:998')} 7 ")
    assert " 2 " in lines["./private/key"] and " 2 " in lines["./hard-link"]  # still one inode
    assert lines["./big.bin"].startswith(f"./big.bin file 4755 0:0 {100 * MiB} ")
    assert lines["./setgid"].startswith("./setgid dir 2775 0:0 ")
    assert lines["./PG_VERSION"].split()[5] == "981173106"       # mtime kept
    assert lines["./empty/nested/deeper"].startswith("./empty/nested/deeper dir 755 ")
    assert lines["./empty/dangling"].endswith("-> ../../nowhere")
    assert lines["./relative-link"].endswith("-> base/16384/1259")
    assert lines["./absolute-link"].endswith("-> /etc/absolute-outside")
    assert lines["./sparse.bin"].startswith(f"./sparse.bin file 644 0:0 {32 * MiB + 4} ")
    # Sparse files keep their content but not their holes: measured, not asserted.
    usage = sh_in(run_container, clone, "du -k /m/sparse.bin").split()[0]
    with open(os.environ["RECORD"], "a") as f:
        f.write(f"sparse-kib-after-clone {usage}\n")
"""


def test_a_clone_keeps_files_owners_modes_and_links(
    inner: InnerPytest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clone_mode: str
) -> None:
    """Every file, directory and link with its content, mode, owner, mtime and inode links
    (on Podman: without owners and mtimes); sparse files keep content, not always holes."""
    record = tmp_path / "record.txt"
    record.touch()
    monkeypatch.setenv("RECORD", str(record))
    run_inner(inner, KEEPS_EVERYTHING, clone_mode, passed=1)
    sparse = dict(line.split() for line in record.read_text().splitlines())
    kib = int(sparse["sparse-kib-after-clone"])
    if clone_mode == "copy" or is_podman(inner.client):
        # Content survives (checked inside); holes do not: the archive API writes them out.
        assert kib >= 32 * 1024
    else:  # a copy-on-write clone reads the source's very file, holes and all
        assert kib < 1024


INDEPENDENT = r"""
import pytest
from pytest_dockervol import ClonesAliveError
from inner_helpers import make_tree, manifest, sh_in


def test_clone_is_independent_both_ways(named_volume, run_container):
    tree = make_tree(run_container, named_volume)
    clone = tree.clone()
    original = manifest(run_container, tree)
    sh_in(run_container, clone, "echo changed > PG_VERSION && rm -r private && touch new", read_only=False)
    assert manifest(run_container, tree) == original
    if clone.copy_on_write:  # the source is the clone's lower layer: it must not change
        with pytest.raises(ClonesAliveError, match=clone.name):
            tree.seed({"only-in-source": "source-only"})
    else:
        sh_in(run_container, tree, "echo source-only > only-in-source", read_only=False)
    assert "only-in-source" not in clone.files()
    assert clone.read_text("PG_VERSION") == "changed\n"
    assert tree.read_text("PG_VERSION") == "15\n"


@pytest.fixture(scope="module")
def golden(volume_factory):
    return volume_factory.named(seed={"rows.txt": "1\n2\n"})


@pytest.fixture
def db(golden):
    return golden.clone()


@pytest.mark.parametrize("row", ["3", "4"])
def test_each_test_sees_only_its_own_changes(db, golden, run_container, row):
    out = sh_in(run_container, db, f"echo {row} >> /m/rows.txt && cat /m/rows.txt", read_only=False)
    assert out == f"1\n2\n{row}\n"
    assert golden.read_text("rows.txt") == "1\n2\n"
"""


def test_a_clone_is_independent_of_its_source(inner: InnerPytest, clone_mode: str) -> None:
    """Changes to a clone leave its source alone and the other way round (a copy-on-write
    source refuses them while its clones live); each test's clone of a module's golden
    volume sees only its own changes."""
    run_inner(inner, INDEPENDENT, clone_mode, passed=3)


NAMES_AND_SOURCES = r"""
import docker.errors
import pytest
from pytest_dockervol import VolumeRemovedError
from inner_helpers import labels_of


def test_clone_labels_name_and_removal(volume_factory, dockervol_client, request):
    source = volume_factory.named(labels={"team": "db"}, seed={"a.txt": "A"})
    clone = source.clone(name=f"{source.name}-copy", labels={"purpose": "test"})
    assert clone.name == f"{source.name}-copy"
    labels = labels_of(dockervol_client, clone)
    assert labels["team"] == "db" and labels["purpose"] == "test"
    assert labels["pytest-dockervol.kind"] == "clone"
    assert labels["pytest-dockervol.clone-of"] == source.name
    assert labels["pytest-dockervol.run"] == labels_of(dockervol_client, source)["pytest-dockervol.run"]
    assert labels["pytest-dockervol.creator"] == request.node.nodeid
    assert clone.read_text("a.txt") == "A"
    clone.remove()
    with pytest.raises(docker.errors.NotFound):
        dockervol_client.volumes.get(clone.name)
    with pytest.raises(VolumeRemovedError):
        clone.files()
    assert source.read_text("a.txt") == "A"


def test_clone_of_helper_and_anonymous_source(volume_factory, anonymous_volume):
    anonymous_volume.seed({"x/y.txt": "from anonymous"}, uid=70, gid=70, file_mode=0o640)
    copy = volume_factory.clone_of(anonymous_volume)
    assert copy.read_text("x/y.txt") == "from anonymous"
    snap = copy.snapshot()
    assert volume_factory.clone_of(snap).files() == ["x/y.txt"]
    assert snap.clone().files() == ["x/y.txt"]
"""


def test_a_clone_takes_its_name_labels_and_any_kind_of_source(
    inner: InnerPytest, clone_mode: str
) -> None:
    """A clone's given name, its source's labels and its own, the run's bookkeeping labels;
    removal; clones of anonymous volumes and of snapshots (volume_factory.clone_of too)."""
    run_inner(inner, NAMES_AND_SOURCES, clone_mode, passed=2)


RESTORE = r"""
from inner_helpers import comparable, is_podman, labels_of, make_tree, manifest, sh_in


def test_snapshot_restore_resets_added_changed_deleted(named_volume, run_container, dockervol_client):
    tree = make_tree(run_container, named_volume)
    before = manifest(run_container, tree)
    labels_before = labels_of(dockervol_client, tree)
    snap = tree.snapshot()
    assert labels_of(dockervol_client, snap.storage)["pytest-dockervol.kind"] == "snapshot"
    assert labels_of(dockervol_client, snap.storage)["pytest-dockervol.snapshot-of"] == tree.name
    sh_in(run_container, tree, '''
        set -e
        echo 16 > PG_VERSION; rm -r private base/16384; rm empty/dangling
        mkdir -p added/dir; echo new > added/dir/file; chmod 777 .; chown 0:0 .
        chmod 600 big.bin; ln -sf elsewhere relative-link
    ''', read_only=False)
    assert manifest(run_container, tree) != before
    assert tree.restore(snap) is tree
    assert comparable(manifest(run_container, tree)) == comparable(before)
    labels_after = labels_of(dockervol_client, tree)
    # The same labels, but for the nonce (proof of a new volume) and, for a copy-on-write
    # restore, the layers the volume now reads.
    def kept(labels):
        return {k: v for k, v in labels.items() if k != "pytest-dockervol.nonce"
                and k != "pytest-dockervol.layer" and not k.startswith("pytest-dockervol.needs.")}
    assert kept(labels_after) == kept(labels_before)
    assert (f"pytest-dockervol.needs.{snap.name}" in labels_after) is tree.copy_on_write
    # A snapshot can be restored again and again, also through the snapshot itself.
    sh_in(run_container, tree, "rm -rf /m/* && echo gone > /m/gone", read_only=False)
    snap.restore()
    assert comparable(manifest(run_container, tree)) == comparable(before)
    assert tree.read_text("private/key") == "secret\n"


def test_restore_anonymous_volume_keeps_name_and_labels(anonymous_volume, dockervol_client):
    anonymous_volume.seed({"keep": "1"})
    labels = labels_of(dockervol_client, anonymous_volume)
    snap = anonymous_volume.snapshot()
    anonymous_volume.seed({"extra": "2"})
    anonymous_volume.restore(snap)
    assert anonymous_volume.files() == ["keep"]
    after = labels_of(dockervol_client, anonymous_volume)
    assert after.pop("pytest-dockervol.nonce")  # the proof that the new volume is ours
    if anonymous_volume.copy_on_write:  # now an overlay of the snapshot: the layers it reads
        assert after.pop("pytest-dockervol.layer").endswith("-layer")
        needs = {k for k in after if k.startswith("pytest-dockervol.needs.")}
        assert f"pytest-dockervol.needs.{snap.name}" in needs
        after = {k: v for k, v in after.items() if k not in needs}
    if is_podman():  # unlabelled before (its anchor was the proof): made again with the labels
        assert labels == {}
        assert after["pytest-dockervol.kind"] == "anonymous"
        assert "com.docker.volume.anonymous" in after
    else:
        assert after == labels


def test_restore_from_another_volumes_snapshot(volume_factory):
    golden = volume_factory.named(seed={"schema.sql": "create table t();"})
    work = volume_factory.named(seed={"scratch": "x"})
    work.restore(golden.snapshot())
    assert work.files() == ["schema.sql"]
"""


def test_restore_resets_the_volume_to_its_snapshot(inner: InnerPytest, clone_mode: str) -> None:
    """Added, changed and deleted files, modes, owners and links go back to the snapshot,
    again and again; the volume keeps its name and labels (anonymous ones too); a snapshot
    of another volume restores as well."""
    run_inner(inner, RESTORE, clone_mode, passed=3)


IN_USE = r"""
import pytest
from pytest_dockervol import VolumeInUseError
from inner_helpers import IMAGE


def test_clone_refused_while_a_container_runs(named_volume, run_container):
    named_volume.seed({"db": "live"})
    server = run_container(IMAGE, ["sleep", "300"], mounts=[named_volume.mount("/m")], name=f"{named_volume.name}-server", network_mode="none")
    with pytest.raises(VolumeInUseError, match=r"cannot clone volume .*: used by container\(s\) .*-server \(running\); stop them first"):
        named_volume.clone()
    with pytest.raises(VolumeInUseError, match="cannot snapshot volume"):
        named_volume.snapshot()
    assert named_volume.clone(allow_running=True).read_text("db") == "live"
    server.kill()
    server.wait(timeout=60)
    assert named_volume.clone().read_text("db") == "live"  # a stopped container is fine


def test_restore_refused_while_a_container_uses_the_volume(named_volume, run_container):
    named_volume.seed({"data": "v1"})
    snap = named_volume.snapshot()
    db = run_container(IMAGE, ["sh", "-c", "echo v2 > /m/data"], mounts=[named_volume.mount("/m")], name=f"{named_volume.name}-db", network_mode="none")
    assert db.wait(timeout=60)["StatusCode"] == 0
    with pytest.raises(VolumeInUseError) as info:
        named_volume.restore(snap)
    message = str(info.value)
    assert "\n" not in message
    assert f"cannot restore volume {named_volume.name}: used by container(s) {named_volume.name}-db (exited)" in message
    assert "stop and remove those containers first" in message
    assert named_volume.read_text("data") == "v2\n"  # nothing was touched
    db.remove(force=True)
    named_volume.restore(snap)
    assert named_volume.read_text("data") == "v1"
"""


def test_a_volume_in_use_is_neither_cloned_snapshotted_nor_restored(
    inner: InnerPytest, clone_mode: str
) -> None:
    """A running container blocks clone() and snapshot() (unless allow_running), any
    container blocks restore(), in one line naming them; nothing is touched."""
    run_inner(inner, IN_USE, clone_mode, passed=2)


REFUSED = r"""
import pytest
from pytest_dockervol import DockervolUsageError, VolumeCopyError, VolumeRemovedError
from inner_helpers import is_podman


def test_restore_refuses_a_driver_that_keeps_data(volume_factory, tmp_path):
    (tmp_path / "bind").mkdir()
    bound = volume_factory.named(driver_opts={"type": "none", "o": "bind", "device": str(tmp_path / "bind")})
    if is_podman():  # its archive API would write beside the unmounted volume: refused
        with pytest.raises(DockervolUsageError, match="Podman mounts only for a running container"):
            bound.seed({"a": "1"})
        return
    bound.seed({"a": "1"})
    snap = bound.snapshot()
    bound.seed({"b": "2"})
    with pytest.raises(VolumeCopyError, match="still holds files after being created again"):
        bound.restore(snap)
    assert sorted(p.name for p in (tmp_path / "bind").iterdir()) == ["a", "b"]


def test_misuse_is_refused_clearly(volume_factory, named_volume):
    named_volume.seed({"a": "1"})
    snap = named_volume.snapshot()
    with pytest.raises(DockervolUsageError, match="takes a Snapshot"):
        named_volume.restore(named_volume)
    with pytest.raises(DockervolUsageError, match="snapshot's own storage"):
        snap.storage.restore(snap)
    snap.remove()
    assert snap.removed
    with pytest.raises(VolumeRemovedError):
        snap.restore()
    with pytest.raises(VolumeRemovedError):
        volume_factory.clone_of(snap)
    named_volume.remove()
    with pytest.raises(VolumeRemovedError):
        named_volume.clone()
"""


def test_misuse_and_a_driver_that_keeps_data_are_refused(
    inner: InnerPytest, clone_mode: str
) -> None:
    """restore() of a volume or of a snapshot's own storage, removed snapshots and volumes:
    refused clearly; a bind-mounted volume, whose data outlives its recreation: refused
    (on Podman, already its seed)."""
    run_inner(inner, REFUSED, clone_mode, passed=2)

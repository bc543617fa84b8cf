"""volume_factory: names, labels, drivers, seeds of every kind, sharing across scopes, safety."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import uuid
from pathlib import Path

import docker
import docker.errors
import pytest
from conftest import InnerPytest, InnerRun

from pytest_dockervol import ContainerRunner, VolumeFactory
from pytest_dockervol._engine.labels import RunIdentity
from pytest_dockervol._options import Settings


def run_inner(inner: InnerPytest, source: str, *, passed: int) -> InnerRun:
    """``source`` as the inner module: all pass and leave nothing behind."""
    inner.pytester.makepyfile(test_inner=source)
    run = inner.run("-v", "-W", "error::pytest_dockervol.DockervolCleanupWarning")
    run.result.assert_outcomes(passed=passed)
    assert run.leftovers() == []
    return run


MODULE_SCOPE = r"""
import os
import pytest


@pytest.fixture(scope="module")
def module_volume(volume_factory):
    return volume_factory.named(seed={"shared.txt": "module"})


# Each test of the pair passes alone; the outer test checks that they shared one volume.
def _record_module_volume(test, volume):
    volume.seed({f"seen-by/{test}": test})
    assert volume.read_text("shared.txt") == "module"
    with open(os.environ["MODULE_RECORD"], "a") as f:
        f.write(f"{test} {volume.name} {','.join(volume.files())}\n")


def test_module_scope_a(module_volume):
    _record_module_volume("a", module_volume)


def test_module_scope_b(module_volume):
    _record_module_volume("b", module_volume)
"""


def test_a_module_scoped_volume_is_one_volume_for_its_tests(
    inner: InnerPytest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module_record = tmp_path / "module-record.txt"
    monkeypatch.setenv("MODULE_RECORD", str(module_record))
    run_inner(inner, MODULE_SCOPE, passed=2)
    # The module-scoped volume was one volume for both tests: the second saw the first.
    first, second = (line.split() for line in module_record.read_text().splitlines())
    assert first[1] == second[1]
    assert second[2].split(",") == ["seen-by/a", "seen-by/b", "shared.txt"]


NAMES_AND_LABELS = r"""
import os
import docker
import pytest
from pytest_dockervol import (
    DockervolUsageError, LabelError, VolumeExistsError, VolumeNameError, VolumeRemovedError,
)

FOREIGN = os.environ["FOREIGN_VOLUME"]


def test_given_name_labels_and_driver_opts(volume_factory, dockervol_client):
    vol = volume_factory.named(f"{FOREIGN}-mine", labels={"team": "db"},
                               driver="local", driver_opts={"type": "tmpfs", "device": "tmpfs"})
    attrs = dockervol_client.volumes.get(vol.name).attrs
    assert attrs["Labels"]["team"] == "db"
    assert attrs["Labels"]["pytest-dockervol.owner"] == "pytest-dockervol"
    assert attrs["Labels"]["pytest-dockervol.creator"].endswith("test_given_name_labels_and_driver_opts")
    assert attrs["Options"] == {"type": "tmpfs", "device": "tmpfs"}
    with pytest.raises(DockervolUsageError, match="is a tmpfs volume: its files live only while"):
        vol.seed({"lost": "on the next mount"})
    vol.remove()
    with pytest.raises(docker.errors.NotFound):
        dockervol_client.volumes.get(vol.name)
    with pytest.raises(VolumeRemovedError):
        vol.files()


def test_existing_foreign_name_is_refused_not_taken_over(volume_factory, dockervol_client):
    with pytest.raises(VolumeExistsError, match="already exists"):
        volume_factory.named(FOREIGN)
    assert dockervol_client.volumes.get(FOREIGN).attrs["Labels"] == {"owner": "someone-else"}


def test_own_name_reused_says_which_test_made_it(volume_factory, named_volume):
    with pytest.raises(VolumeExistsError, match="this run created it for .*test_own_name_reused"):
        volume_factory.named(named_volume.name)


@pytest.mark.parametrize("name", ["x", "-bad", "a b", "a/b", ""])
def test_invalid_names(volume_factory, name):
    with pytest.raises(VolumeNameError, match="invalid volume name"):
        volume_factory.named(name)


def test_reserved_label(volume_factory):
    with pytest.raises(LabelError, match="reserved"):
        volume_factory.named(labels={"pytest-dockervol.run": "x"})
"""


def test_names_labels_and_options_are_taken_or_refused(
    inner: InnerPytest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A given name, labels and driver options land on the volume (a tmpfs one refuses
    seeds); a name someone else's volume has, one this run used, an invalid name and a
    reserved label are refused, and someone else's volume survives."""
    client = inner.client
    foreign = client.volumes.create(
        name=f"pdv-foreign-{uuid.uuid4().hex[:12]}",  # unique across concurrent suites
        labels={"owner": "someone-else"},
    )
    monkeypatch.setenv("FOREIGN_VOLUME", foreign.name)
    try:
        run_inner(inner, NAMES_AND_LABELS, passed=9)
        assert client.volumes.get(foreign.name).attrs["Labels"] == {"owner": "someone-else"}
    finally:
        foreign.remove()


BAD_SEEDS = r"""
import pytest
from pytest_dockervol import (
    DockervolUsageError, HostPathError, SeedPathError, SeedSourceError, VolumeReadError,
)


def test_callable_seed_takes_no_options(named_volume):
    with pytest.raises(DockervolUsageError, match="seed.callable. takes no dest"):
        named_volume.seed(lambda v: None, dest="sub")


@pytest.mark.parametrize("bad", ["../x", "/etc/passwd", "a/../../b", ""])
def test_escaping_seed_paths_create_nothing(volume_factory, dockervol_client, request, bad):
    with pytest.raises(SeedPathError):
        volume_factory.named(seed={bad: "x"})
    with pytest.raises(SeedPathError):
        volume_factory.anonymous(seed={bad: "x"})
    mine = dockervol_client.volumes.list(
        filters={"label": f"pytest-dockervol.creator={request.node.nodeid}"})
    assert mine == []


def test_symlink_out_of_seed_dir_refused(volume_factory, tmp_path, named_volume):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "evil").symlink_to("/etc/passwd")
    with pytest.raises(SeedPathError):
        named_volume.seed(tmp_path / "src")
    assert named_volume.files() == []


def test_unreadable_archive_and_missing_sources(volume_factory, tmp_path, named_volume):
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tar at all")
    with pytest.raises(SeedSourceError, match="not a readable tar"):
        named_volume.seed(junk)
    with pytest.raises(SeedSourceError, match="does not exist"):
        named_volume.seed(tmp_path / "missing")
    with pytest.raises(HostPathError, match="does not exist"):
        volume_factory.host(tmp_path / "missing")


def test_failed_callable_seed_leaks_nothing(volume_factory, dockervol_client, request):
    def boom(volume):
        volume.seed({"half": "written"})
        raise RuntimeError("seed failed half way")
    with pytest.raises(RuntimeError):
        volume_factory.named(seed=boom)
    mine = dockervol_client.volumes.list(
        filters={"label": f"pytest-dockervol.creator={request.node.nodeid}"})
    assert mine == []


def test_read_errors(named_volume):
    named_volume.seed({"d/f": "x"})
    with pytest.raises(VolumeReadError, match="no such file"):
        named_volume.read_bytes("nope")
    with pytest.raises(VolumeReadError, match="directory"):
        named_volume.read_bytes("d")
    with pytest.raises(SeedPathError):
        named_volume.read_bytes("../etc/passwd")
"""


def test_bad_seeds_and_reads_are_refused_and_leave_nothing(inner: InnerPytest) -> None:
    """Seed paths that escape the volume (also through a symlink), unreadable or missing
    sources, options a callable seed cannot take, bad reads: refused; a refused or failed
    seed leaves no volume behind."""
    run_inner(inner, BAD_SEEDS, passed=9)


SEEDS = r"""
import io, stat, tarfile
from pytest_dockervol import SeedFile
from inner_helpers import is_podman, sh


def test_seed_directory_archive_and_callable(volume_factory, tmp_path, run_container):
    src = tmp_path / "src"
    (src / "conf.d").mkdir(parents=True)
    (src / "conf.d" / "app.conf").write_text("port=1\n")
    (src / "run.sh").write_text("#!/bin/sh\necho run\n")
    (src / "run.sh").chmod(0o700)
    (src / "link").symlink_to("conf.d/app.conf")
    archive = tmp_path / "data.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("pg/PG_VERSION"); payload = b"15\n"; info.size = len(payload)
        info.uid = info.gid = 999; info.mode = 0o600
        tar.addfile(info, io.BytesIO(payload))
    vol = volume_factory.named(seed=src)
    vol.seed(archive)
    vol.seed(lambda v: v.seed({"from-callable": "yes"}), )
    vol.seed({"deep": SeedFile(b"#!/bin/sh\n", mode=0o755)}, dest="bin")
    assert vol.files() == ["bin/deep", "conf.d/app.conf", "from-callable", "pg/PG_VERSION", "run.sh"]
    out = sh(run_container,
        "stat -c '%n %a %u:%g' /v/run.sh /v/conf.d /v/pg/PG_VERSION /v/bin/deep; readlink /v/link",
        vol.mount("/v"))
    assert out.splitlines() == [
        "/v/run.sh 755 0:0", "/v/conf.d 755 0:0", "/v/pg/PG_VERSION 600 999:999",
        "/v/bin/deep 755 0:0", "conf.d/app.conf"]


def test_entries_list_types_modes_owners_and_links(named_volume, dockervol_client):
    named_volume.seed({"d/f": SeedFile("xyz", mode=0o600)}, uid=999, gid=998, dir_mode=0o750)
    entries = {e.path: e for e in named_volume.entries()}
    assert sorted(entries) == ["d", "d/f"]
    assert stat.S_ISDIR(entries["d"].mode) and stat.S_IMODE(entries["d"].mode) == 0o750
    assert stat.S_ISREG(entries["d/f"].mode) and stat.S_IMODE(entries["d/f"].mode) == 0o600
    assert entries["d/f"].size == 3
    owners = {(e.uid, e.gid) for e in entries.values()}
    assert owners == ({(None, None)} if is_podman(dockervol_client) else {(999, 998)})
"""


def test_seeds_of_every_kind_land_with_their_modes_and_owners(inner: InnerPytest) -> None:
    """A directory (its symlinks too), a tar archive, a callable and SeedFiles under a
    ``dest``, as a container sees them; entries() lists types, modes, sizes and owners."""
    run_inner(inner, SEEDS, passed=2)


REMOVALS = r"""
import os, pathlib
import pytest
from docker.types import Mount
from pytest_dockervol import HostPathError
from inner_helpers import IMAGE

EXISTING_DIR = pathlib.Path(os.environ["EXISTING_DIR"])


def test_host_existing_dir_is_never_touched(volume_factory, run_container):
    vol = volume_factory.host(EXISTING_DIR)
    c = run_container(IMAGE, ["cat", "/src/main.py"], mounts=[vol.mount("/src", read_only=True)])
    assert c.wait(timeout=60)["StatusCode"] == 0
    assert c.logs() == b"print('hi')\n"
    vol.remove()


def test_host_at_makes_a_new_directory_and_deletes_it(volume_factory, tmp_path):
    vol = volume_factory.host_at(tmp_path / "mine")
    vol.seed({"f": "x"})
    with pytest.raises(HostPathError, match="exists already"):
        volume_factory.host_at(tmp_path / "mine")
    with pytest.raises(HostPathError, match="does not exist"):
        volume_factory.host_at(tmp_path / "no" / "such")
    assert vol.files() == ["f"]
    vol.remove()
    assert not (tmp_path / "mine").exists()


def test_host_factory_seed_and_remove(volume_factory):
    vol = volume_factory.host(seed={"a/b.txt": "x"})
    assert vol.files() == ["a/b.txt"]
    assert oct((vol.path / "a").stat().st_mode & 0o777) == "0o755"
    vol.remove()
    assert not vol.path.exists()


def test_run_container_removes_anonymous_volumes(run_container, dockervol_client):
    c = run_container(IMAGE, ["sh", "-c", "echo x > /anon/f"], mounts=[Mount("/anon", None, type="volume")])
    c.wait(timeout=60)
    anon = [m["Name"] for m in c.attrs["Mounts"] if m["Destination"] == "/anon"]
    assert anon
    with open(os.environ["RECORD"], "a") as f:
        f.write(anon[0] + "\n")
"""


def test_removal_takes_what_the_run_made_and_only_that(
    inner: InnerPytest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host volume on an existing directory leaves it; host_at() and host() delete the
    directories they made; run_container removes its containers' anonymous volumes."""
    existing = tmp_path / "existing-src"
    existing.mkdir()
    (existing / "main.py").write_text("print('hi')\n")
    record = tmp_path / "record.txt"
    record.touch()
    monkeypatch.setenv("EXISTING_DIR", str(existing))
    monkeypatch.setenv("RECORD", str(record))
    run_inner(inner, REMOVALS, passed=4)
    # The directory the tests bound survives.
    assert (existing / "main.py").read_text() == "print('hi')\n"
    anonymous = record.read_text().split()
    assert len(anonymous) == 1
    names = {v.name for v in inner.client.volumes.list()}
    assert anonymous[0] not in names, "run_container must remove anonymous volumes (v=True)"


def _volume_of_a_dead_run(client: docker.DockerClient) -> str:
    """A volume labelled by a run of this machine and pid namespace whose process is gone."""
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    dead = RunIdentity(run_id=uuid.uuid4().hex, worker="main", session_pid=finished.pid)
    name = f"pdv-deadrun-{dead.short_run}"
    client.volumes.create(name=name, labels=dead.labels("named", "test"))
    return name


@pytest.mark.parametrize("reap", [True, False], ids=["reaps", "leaves"])
def test_reap_on_connect_decides_whether_a_new_factory_sweeps_dead_runs(
    docker_client: docker.DockerClient, reap: bool
) -> None:
    """What a session does when it first connects (reap), and what the benchmark asks
    for on a shared engine (leave): the same factory, one switch."""
    name = _volume_of_a_dead_run(docker_client)
    factory = VolumeFactory(Settings(), RunIdentity.new(), reap_on_connect=reap, _ispytest=True)
    try:
        assert factory.engine.describe()
        left = {v.name for v in docker_client.volumes.list(filters={"name": name})}
        assert (name in left) is not reap
        assert any(line.startswith("run ") for line in factory.reaped_lines) is reap
    finally:
        factory.close()
        with contextlib.suppress(docker.errors.NotFound):
            docker_client.volumes.get(name).remove()


def test_factory_and_runner_warn_when_made_by_hand() -> None:
    """They come from fixtures (volume_factory, run_container), as pytest's own do."""
    with pytest.warns(pytest.PytestDeprecationWarning, match="private pytest-dockervol"):
        factory = VolumeFactory(Settings(), RunIdentity.new())
    with pytest.warns(pytest.PytestDeprecationWarning, match="private pytest-dockervol"):
        ContainerRunner(factory)

"""xdist isolation, run-wide shared volumes, and concurrent runs on one engine."""

from __future__ import annotations

import fnmatch
import os
import subprocess
import sys
from pathlib import Path

import docker
import pytest
from conftest import InnerPytest

MANY = r"""
import os, pytest

@pytest.mark.parametrize("i", range(12))
@pytest.mark.parametrize("kind", ["named_volume", "anonymous_volume", "host_volume"])
def test_many(kind, i, request, worker_id):
    volume = request.getfixturevalue(kind)
    volume.seed({f"f{i}.txt": kind})
    assert volume.files() == [f"f{i}.txt"]
    with open(os.path.join(os.environ["RECORD_DIR"], f"{kind}-{i}"), "w") as f:
        f.write(f"{worker_id} {volume.name}")
"""


def test_36_volumes_on_two_workers_are_distinct_and_removed(
    inner: InnerPytest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECORD_DIR", str(tmp_path))
    inner.pytester.makepyfile(test_many=MANY)
    run = inner.run("-n", "2")
    run.result.assert_outcomes(passed=36)
    records = [p.read_text().split() for p in tmp_path.iterdir()]
    assert len(records) == 36
    names = [name for _worker, name in records]
    assert len(set(names)) == 36, "no name shared between tests"
    assert {worker for worker, _name in records} == {"gw0", "gw1"}
    assert run.leftovers() == []
    existing = {v.name for v in inner.client.volumes.list()}
    assert not existing & set(names)


def test_same_suite_without_xdist(
    inner: InnerPytest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECORD_DIR", str(tmp_path))
    inner.pytester.makepyfile(test_many=MANY)
    inner.pytester.makeconftest(
        "import pytest\n@pytest.fixture\ndef worker_id():\n    return 'master'\n"
    )
    run = inner.run("-p", "no:xdist")
    run.result.assert_outcomes(passed=36)
    names = [p.read_text().split()[1] for p in tmp_path.iterdir()]
    assert len(set(names)) == 36
    assert run.leftovers() == []


SHARED = r"""
import os, pathlib, time, pytest

COUNT_DIR = pathlib.Path(os.environ["COUNT_DIR"])

def seed_database(volume):
    # Count seeds from the outside: one marker file per call, whoever makes it.
    (COUNT_DIR / f"seeded-by-{os.getpid()}-{time.monotonic_ns()}").touch()
    time.sleep(1.0)  # slow enough that the other worker asks while this one seeds
    volume.seed({"schema.sql": "create table t(x int);", "rows.csv": "1\n2\n3\n"})

@pytest.fixture(scope="session")
def golden(volume_factory):
    return volume_factory.shared("golden-db", seed=seed_database)

@pytest.mark.parametrize("i", range(8))
def test_reads_shared(golden, i, worker_id, run_container):
    assert golden.files() == ["rows.csv", "schema.sql"]
    c = run_container(os.environ["DOCKERVOL_IMAGE"], ["cat", "/db/rows.csv"], mounts=[golden.mount("/db", read_only=True)])
    assert c.wait(timeout=60)["StatusCode"] == 0
    assert c.logs() == b"1\n2\n3\n"
    (COUNT_DIR / f"user-{worker_id}-{golden.name}").touch()

def test_shared_volume_cannot_be_removed_by_a_test(golden):
    from pytest_dockervol import DockervolUsageError
    with pytest.raises(DockervolUsageError, match="belongs to the whole run"):
        golden.remove()
"""


def test_shared_volume_seeded_once_per_run_and_removed_at_the_end(
    inner: InnerPytest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COUNT_DIR", str(tmp_path))
    inner.pytester.makepyfile(test_shared=SHARED)
    run = inner.run("-n", "2")
    run.result.assert_outcomes(passed=9)
    seeded = [p for p in tmp_path.iterdir() if p.name.startswith("seeded-by-")]
    assert len(seeded) == 1, "the seed callable must run exactly once per run"
    users = [p.name.split("-", 2) for p in tmp_path.iterdir() if p.name.startswith("user-")]
    assert {worker for _u, worker, _n in users} == {"gw0", "gw1"}, "both workers used it"
    assert len({name for _u, _w, name in users}) == 1, "every worker got the same volume"
    assert run.leftovers() == []


def test_failed_shared_seed_is_the_same_error_everywhere(
    inner: InnerPytest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COUNT_DIR", str(tmp_path))
    inner.pytester.makepyfile(
        test_fail=r"""
import os, pathlib, pytest
from pytest_dockervol import SharedSeedError

COUNT_DIR = pathlib.Path(os.environ["COUNT_DIR"])

def broken(volume):
    (COUNT_DIR / f"attempt-{os.getpid()}").touch()
    volume.seed({"half.txt": "x"})
    raise RuntimeError("schema.sql: syntax error at line 3")

@pytest.mark.parametrize("i", range(6))
def test_uses(volume_factory, i):
    with pytest.raises(SharedSeedError) as info:
        volume_factory.shared("broken", seed=broken)
    (COUNT_DIR / f"error-{i}").write_text(str(info.value))
"""
    )
    run = inner.run("-n", "2")
    run.result.assert_outcomes(passed=6)
    attempts = [p for p in tmp_path.iterdir() if p.name.startswith("attempt-")]
    assert len(attempts) == 1
    expected = (
        "shared volume 'broken' could not be seeded (RuntimeError: schema.sql: syntax error "
        "at line 3, first raised in gw*'s seed); fix the seed: the run does not retry it"
    )
    errors = [p.read_text() for p in sorted(tmp_path.glob("error-*"))]
    assert len(errors) == 6
    assert all(fnmatch.fnmatch(error, expected) for error in errors), errors
    assert len(set(errors)) == 1, "the seeding worker and the waiting ones raise the same error"
    assert run.leftovers() == []


CONCURRENT = r"""
import os, time, pytest

@pytest.fixture(scope="session")
def mine(volume_factory):
    return volume_factory.named(seed={"owner.txt": os.environ["WHO"]})

@pytest.mark.parametrize("i", range(6))
def test_work(mine, named_volume, i):
    named_volume.seed({"x": str(i)})
    time.sleep(0.4)
    assert mine.read_text("owner.txt") == os.environ["WHO"]
    assert named_volume.read_text("x") == str(i)
"""


def test_two_concurrent_runs_leave_each_other_alone(
    docker_client: docker.DockerClient, image: str, tmp_path: Path
) -> None:
    from conftest import INNER_RUN_IDS, leftovers

    procs = []
    for who in ("alpha", "beta"):
        workdir = tmp_path / who
        workdir.mkdir()
        (workdir / "test_concurrent.py").write_text(CONCURRENT)
        env = {**os.environ, "WHO": who, "DOCKERVOL_IMAGE": image, "PYTHONUNBUFFERED": "1"}
        log = open(workdir / "log.txt", "wb")  # noqa: SIM115
        procs.append(
            (
                workdir,
                log,
                subprocess.Popen(
                    [sys.executable, "-m", "pytest", "-n", "2", "-p", "no:cacheprovider", "-rA"],
                    cwd=workdir,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                ),
            )
        )
    for workdir, log, proc in procs:
        assert proc.wait(timeout=300) == 0, (workdir / "log.txt").read_text()
        log.close()
    for workdir, _log, _proc in procs:
        text = (workdir / "log.txt").read_text()
        assert "6 passed" in text
        run_id = text.split("dockervol: run ", 1)[1][:32]
        INNER_RUN_IDS.append(run_id)
        assert leftovers(docker_client, run_id) == []


GOLDEN = r"""
import os, pathlib, pytest

COUNT_DIR = pathlib.Path(os.environ["COUNT_DIR"])

def build_golden(volume):
    (COUNT_DIR / f"built-{os.getpid()}").touch()
    volume.seed({"db/rows.csv": "1\n2\n"}, uid=999, gid=999, dir_mode=0o700)

@pytest.fixture(scope="session")
def golden(volume_factory):
    return volume_factory.shared("golden", seed=build_golden)

@pytest.fixture
def db(golden):
    return golden.clone()

@pytest.mark.parametrize("i", range(6))
def test_each_test_gets_its_own_copy(db, i):
    assert db.read_text("db/rows.csv") == "1\n2\n"
    db.seed({f"db/mine-{i}": str(i)}, uid=999, gid=999, dir_mode=0o700)
    assert db.files() == ["db/mine-%d" % i, "db/rows.csv"]
"""


def test_golden_built_once_per_run_and_cloned_per_test(
    inner: InnerPytest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COUNT_DIR", str(tmp_path))
    inner.pytester.makepyfile(test_golden=GOLDEN)
    run = inner.run("-n", "2")
    run.result.assert_outcomes(passed=6)
    assert len(list(tmp_path.glob("built-*"))) == 1
    assert run.leftovers() == []

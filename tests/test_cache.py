"""The golden cache: volume_factory.cached() built once, reused by later runs until what it is
built from changes, never used half-built, immutable, and managed by `pytest-dockervol ... --cache`."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest
from conftest import INNER_RUN_IDS, InnerPytest, InnerRun, cli, read_run_id, wait_for

LABEL_CACHE_NAME = "pytest-dockervol.cache-name"
LABEL_CACHE_KEY = "pytest-dockervol.cache-key"
LABEL_CACHE_ENTRY = "pytest-dockervol.cache-entry"
LABEL_KIND = "pytest-dockervol.kind"


# -- helpers ---------------------------------------------------------------------------------


def new_key() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


def entries_of(client: docker.DockerClient, key: str) -> list[str]:
    """Names of the entry volumes of ``key`` (complete or not) on the engine."""
    found = client.volumes.list(filters={"label": f"{LABEL_CACHE_NAME}={key}"})
    return sorted(str(v.name) for v in found)


def markers_of(client: docker.DockerClient, entry: str) -> list[str]:
    """Names of the marker volumes that declare ``entry`` complete."""
    found = client.volumes.list(filters={"label": f"{LABEL_CACHE_ENTRY}={entry}"})
    return sorted(
        str(v.name)
        for v in found
        if (v.attrs.get("Labels") or {}).get(LABEL_KIND) == "cache-marker"
    )


def remove_cache(client: docker.DockerClient, key: str, seen: set[str]) -> None:
    """`rm --cache KEY`, then nothing of the key is left: entries nor markers (any leftover
    is removed by force so the engine stays clean, and the test fails)."""
    seen |= set(entries_of(client, key))
    done = cli("rm", "--cache", key)
    left = entries_of(client, key) + [m for e in sorted(seen) for m in markers_of(client, e)]
    for name in left:
        with contextlib.suppress(docker.errors.APIError):
            client.volumes.get(name).remove(force=True)
    assert left == [], f"rm --cache {key} left {left}:\n{done.stdout}{done.stderr}"


@contextlib.contextmanager
def cache_key(client: docker.DockerClient) -> Iterator[tuple[str, set[str]]]:
    """A fresh key; every entry of it (plus entry names the test adds to the set) is
    removed at the end."""
    key, seen = new_key(), set[str]()
    try:
        yield key, seen
    finally:
        remove_cache(client, key, seen)


def assert_clean(run: InnerRun, *built: str) -> None:
    """The run reported no problem, and left nothing but the complete entries it built
    (they keep their builder's run label: ``remove_cache`` removes them)."""
    text = run.result.stdout.str()
    assert "could not remove" not in text, text
    assert sorted(run.leftovers()) == sorted(f"volume {name}" for name in built)


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def records(directory: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in directory.iterdir()}


def start_run(cwd: Path, env: dict[str, str], *args: str) -> tuple[subprocess.Popen[bytes], Path]:
    """A subprocess pytest in its own session, its output to ``cwd/log-N.txt``."""
    log = cwd / f"log-{uuid.uuid4().hex[:6]}.txt"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
            cwd=cwd,
            env={**env, "PYTHONUNBUFFERED": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return proc, log


def finish_run(proc: subprocess.Popen[bytes], log: Path) -> str:
    """Wait for a run started by ``start_run``; it passed; its output."""
    try:
        rc = proc.wait(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    text = log.read_text()
    INNER_RUN_IDS.append(text.split("dockervol: run ", 1)[1][:32])
    assert rc == 0, text
    assert "could not remove" not in text, text
    return text


@pytest.fixture
def env(inner: InnerPytest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Where inner runs record their builds (BUILD_LOG) and the entries they got (RECORD_DIR)."""
    record = tmp_path / "records"
    record.mkdir()
    monkeypatch.setenv("BUILD_LOG", str(tmp_path / "builds.txt"))
    monkeypatch.setenv("RECORD_DIR", str(record))
    monkeypatch.setenv("DOCKERVOL_IMAGE", inner.image)
    return dict(os.environ)


# -- 1. reuse --------------------------------------------------------------------------------

REUSE = r"""
import os, pathlib, pytest

def builder(volume):
    with open(os.environ["BUILD_LOG"], "a") as f:
        f.write(f"{os.getpid()}\n")
    volume.seed({"data/hello.txt": "hello"})

@pytest.mark.parametrize("i", range(4))
def test_use(volume_factory, i):
    worker_id = os.environ.get("PYTEST_XDIST_WORKER", "main")
    golden = volume_factory.cached(os.environ["CACHE_KEY"], seed=builder)
    assert golden.files() == ["data/hello.txt"]
    clone = golden.clone()
    # Copy-on-write on Docker's local driver; Podman's clones are full copies.
    assert clone.copy_on_write is ("Podman" not in volume_factory.engine.describe())
    assert clone.read_text("data/hello.txt") == "hello"
    print("cache entry:", golden.name)
    (pathlib.Path(os.environ["RECORD_DIR"]) / f"{worker_id}-{i}").write_text(golden.name)
"""


def test_entry_built_once_across_workers_and_reused_by_the_next_run(
    inner: InnerPytest, env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = inner.client
    record = tmp_path / "records"
    with cache_key(client) as (key, _seen):
        monkeypatch.setenv("CACHE_KEY", key)
        inner.pytester.makepyfile(test_reuse=REUSE)
        first = inner.run("-n", "2", "-rP")
        first.result.assert_outcomes(passed=4)
        assert len(lines(tmp_path / "builds.txt")) == 1, "built once for the whole run"
        got = records(record)
        assert {name.split("-")[0] for name in got} == {"gw0", "gw1"}, "both workers asked"
        assert len(set(got.values())) == 1, got
        name = next(iter(got.values()))
        assert f"cache entry: {name}" in first.result.stdout.str()
        # The entry on the engine: its documented name and labels, and a marker.
        labels = client.volumes.get(name).attrs["Labels"]
        assert labels[LABEL_CACHE_NAME] == key
        assert labels[LABEL_KIND] == "cached"
        digest = labels[LABEL_CACHE_KEY]
        assert re.fullmatch(rf"[\w.-]+-cache-{key}-{digest[:12]}-[0-9a-f]+", name), name
        assert len(markers_of(client, name)) == 1
        assert entries_of(client, key) == [name]
        assert_clean(first, name)

        for p in record.iterdir():
            p.unlink()
        second = inner.run("-p", "no:xdist", "-rP")
        second.result.assert_outcomes(passed=4)
        assert len(lines(tmp_path / "builds.txt")) == 1, "the second run built nothing"
        assert set(records(record).values()) == {name}, records(record)
        assert f"cache entry: {name}" in second.result.stdout.str()
        assert entries_of(client, key) == [name]
        assert_clean(second)


# -- 2. invalidation -------------------------------------------------------------------------

INVALIDATE = r"""
import os, pathlib

def builder(volume):
    with open(os.environ["BUILD_LOG"], "a") as f:
        f.write(f"{os.getpid()}\n")
    volume.seed({"built.txt": "x"})

def test_use(volume_factory):
    key = os.environ["CACHE_KEY"]
    by_code = volume_factory.cached(
        key, seed=builder, inputs=[os.environ["INPUT_DIR"]], version=os.environ["VERSION"]
    )
    by_data = volume_factory.cached(key + "-map", seed={"m.txt": os.environ["MAPPING"]})
    assert by_data.read_text("m.txt") == os.environ["MAPPING"]
    record = pathlib.Path(os.environ["RECORD_DIR"])
    (record / "code").write_text(by_code.name)
    (record / "data").write_text(by_data.name)
"""


def test_entry_rebuilt_when_inputs_version_or_seed_content_change(
    inner: InnerPytest, env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = inner.client
    inputs = tmp_path / "inputs"
    (inputs / "sub").mkdir(parents=True)
    schema = inputs / "sub" / "schema.sql"
    schema.write_text("create table t(x int);\n")
    monkeypatch.setenv("INPUT_DIR", str(inputs))
    monkeypatch.setenv("VERSION", "v1")
    monkeypatch.setenv("MAPPING", "one")
    inner.pytester.makepyfile(test_invalidate=INVALIDATE)
    record = tmp_path / "records"

    def run() -> tuple[int, str, str]:
        done = inner.run("-p", "no:xdist")
        done.result.assert_outcomes(passed=1)
        assert "could not remove" not in done.result.stdout.str(), done.result.stdout.str()
        got = records(record)
        return len(lines(tmp_path / "builds.txt")), got["code"], got["data"]

    with cache_key(client) as (key, _seen):
        monkeypatch.setenv("CACHE_KEY", key)
        try:
            builds, code1, data1 = run()
            assert builds == 1

            os.utime(schema, (1_000_000, 1_000_000))  # times are not content
            assert run() == (1, code1, data1), "nothing changed: nothing rebuilt"

            schema.write_text("create table t(x bigint);\n")
            monkeypatch.setenv("MAPPING", "two")
            builds, code2, data2 = run()
            assert builds == 2, "an input's bytes changed: rebuilt"
            assert code2 != code1
            assert data2 != data1, "a mapping seed's content changed: rebuilt"

            monkeypatch.setenv("VERSION", "v2")
            builds, code3, data = run()
            assert (builds, data) == (3, data2), "the version changed: that entry only rebuilt"
            assert code3 not in (code1, code2)
        finally:
            remove_cache(client, key + "-map", set())
        assert set(entries_of(client, key)) == {code1, code2, code3}, "older entries stay"


# -- 3. failures -----------------------------------------------------------------------------

BROKEN = r"""
import os, pathlib, pytest
from pytest_dockervol import CacheBuildError

def broken(volume):
    with open(os.environ["BUILD_LOG"], "a") as f:
        f.write(f"{os.getpid()}\n")
    volume.seed({"half.txt": "x"})
    raise RuntimeError("schema.sql: syntax error at line 3")

@pytest.mark.parametrize("i", range(4))
def test_use(volume_factory, i, worker_id):
    with pytest.raises(CacheBuildError) as info:
        volume_factory.cached(os.environ["CACHE_KEY"], seed=broken)
    (pathlib.Path(os.environ["RECORD_DIR"]) / f"{worker_id}-{i}").write_text(str(info.value))
"""


def test_failed_build_raises_everywhere_and_leaves_no_entry(
    inner: InnerPytest, env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = inner.client
    with cache_key(client) as (key, _seen):
        monkeypatch.setenv("CACHE_KEY", key)
        inner.pytester.makepyfile(test_broken=BROKEN)
        run = inner.run("-n", "2")
        run.result.assert_outcomes(passed=4)
        assert len(lines(tmp_path / "builds.txt")) == 1, "the other worker does not retry"
        errors = records(tmp_path / "records")
        assert {name.split("-")[0] for name in errors} == {"gw0", "gw1"}
        assert len(errors) == 4
        for error in errors.values():
            assert f"golden cache entry {key!r} could not be built" in error, error
            assert "RuntimeError: schema.sql: syntax error at line 3" in error, error
        assert entries_of(client, key) == []
        assert_clean(run)


SLOW = r"""
import os, pathlib, time

def builder(volume):
    with open(os.environ["BUILD_LOG"], "a") as f:
        f.write(f"{os.getpid()}\n")
    volume.seed({"half.txt": "x"})
    pathlib.Path(os.environ["READY"]).touch()
    time.sleep(float(os.environ["BUILD_SLEEP"]))
    volume.seed({"rest.txt": "y"})

def test_use(volume_factory):
    golden = volume_factory.cached(os.environ["CACHE_KEY"], seed=builder)
    assert golden.files() == ["half.txt", "rest.txt"]
    (pathlib.Path(os.environ["RECORD_DIR"]) / "entry").write_text(golden.name)
"""


def test_build_killed_half_way_is_reaped_and_never_used(
    inner: InnerPytest, env: dict[str, str], tmp_path: Path
) -> None:
    client = inner.client
    workdir = inner.pytester.path
    (workdir / "test_slow.py").write_text(SLOW)
    ready = tmp_path / "ready"
    with cache_key(client) as (key, seen):
        run_env = {**env, "CACHE_KEY": key, "READY": str(ready)}
        proc, log = start_run(workdir, {**run_env, "BUILD_SLEEP": "300"}, "-p", "no:xdist")
        try:
            INNER_RUN_IDS.append(read_run_id(log))
            wait_for(ready.exists, 60, "the builder to be half-way")
            half = entries_of(client, key)
            assert len(half) == 1, half
            seen.update(half)
            assert markers_of(client, half[0]) == [], "a build in progress has no marker"
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        wait_for(lambda: entries_of(client, key) == [], 60, "the watchdog to reap the half entry")

        ready.unlink()
        text = finish_run(*start_run(workdir, {**run_env, "BUILD_SLEEP": "0"}, "-p", "no:xdist"))
        assert "1 passed" in text, text
        assert len(lines(tmp_path / "builds.txt")) == 2, "the next run built a fresh entry"
        fresh = (tmp_path / "records" / "entry").read_text()
        assert fresh != half[0]
        assert entries_of(client, key) == [fresh]
        assert len(markers_of(client, fresh)) == 1


# -- 4. immutability -------------------------------------------------------------------------

IMMUTABLE = r"""
import os, pathlib, pytest
from pytest_dockervol import DockervolUsageError

def test_immutable(volume_factory, run_container):
    image = os.environ["DOCKERVOL_IMAGE"]
    golden = volume_factory.cached(os.environ["CACHE_KEY"], seed={"a.txt": "golden"})
    snap = golden.snapshot()
    refused = {
        "seed": lambda: golden.seed({"b.txt": "x"}),
        "restore": lambda: golden.restore(snap),
        "mount": lambda: golden.mount("/g", read_only=False),
        "volumes_dict": lambda: golden.volumes_dict("/g", read_only=False),
    }
    messages = []
    for what, call in refused.items():
        with pytest.raises(DockervolUsageError) as info:
            call()
        message = str(info.value)
        assert "\n" not in message, (what, message)
        assert "clone" in message and golden.name in message, (what, message)
        messages.append(f"{what}: {message}")
    pathlib.Path(os.environ["RECORD_DIR"], "messages").write_text("\n".join(messages))

    clone = golden.clone()
    assert clone.copy_on_write is ("Podman" not in volume_factory.engine.describe())
    clone.seed({"b.txt": "mine"})
    c = run_container(image, ["sh", "-c", "echo more > /c/c.txt && rm /c/a.txt"], mounts=[clone.mount("/c")])
    assert c.wait(timeout=60)["StatusCode"] == 0
    assert clone.files() == ["b.txt", "c.txt"]
    assert golden.files() == ["a.txt"]
    r = run_container(image, ["cat", "/g/a.txt"], mounts=[golden.mount("/g")])  # read-only
    assert r.wait(timeout=60)["StatusCode"] == 0
    assert r.logs() == b"golden"
    clone.remove()
    golden.remove()  # lets go of the entry: it stays in the cache
    (pathlib.Path(os.environ["RECORD_DIR"]) / "entry").write_text(golden.name)
"""


def test_cached_volume_is_immutable_and_clones_are_writable(
    inner: InnerPytest, env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = inner.client
    with cache_key(client) as (key, _seen):
        monkeypatch.setenv("CACHE_KEY", key)
        inner.pytester.makepyfile(test_immutable=IMMUTABLE)
        run = inner.run("-p", "no:xdist")
        run.result.assert_outcomes(passed=1)
        name = (tmp_path / "records" / "entry").read_text()
        messages = (tmp_path / "records" / "messages").read_text().splitlines()
        assert [m.split(":")[0] for m in messages] == ["seed", "restore", "mount", "volumes_dict"]
        assert entries_of(client, key) == [name], ".remove() keeps a complete entry"
        assert len(markers_of(client, name)) == 1
        files = client.containers.run(
            inner.image,
            ["find", "/v", "-type", "f"],
            volumes={name: {"bind": "/v", "mode": "ro"}},
            remove=True,
        )
        assert files == b"/v/a.txt\n", "the clone's changes never reached the entry"
        assert_clean(run, name)


# -- 5. modes --------------------------------------------------------------------------------

MODES = r"""
import os, pathlib, pytest

def builder(volume):
    with open(os.environ["BUILD_LOG"], "a") as f:
        f.write(f"{os.getpid()}\n")
    volume.seed({"m.txt": "x"})

@pytest.mark.parametrize("i", range(4))
def test_use(volume_factory, i):
    golden = volume_factory.cached(os.environ["CACHE_KEY"], seed=builder)
    assert golden.clone().read_text("m.txt") == "x"
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    (pathlib.Path(os.environ["RECORD_DIR"]) / f"{worker}-{i}").write_text(golden.name)
"""


def test_cache_off_builds_per_run_and_removes_the_entry(
    inner: InnerPytest, env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = inner.client
    with cache_key(client) as (key, seen):
        monkeypatch.setenv("CACHE_KEY", key)
        inner.pytester.makepyfile(test_modes=MODES)
        run = inner.run("-n", "2", "--dockervol-cache=off")
        run.result.assert_outcomes(passed=4)
        run.result.stdout.fnmatch_lines(["*cache: off*"])
        names = set(records(tmp_path / "records").values())
        seen.update(names)
        assert len(names) == 1, names
        assert len(lines(tmp_path / "builds.txt")) == 1, "built once per run"
        assert entries_of(client, key) == [], "off: the entry goes with the run"
        assert markers_of(client, names.pop()) == []
        assert_clean(run)


def test_cache_refresh_rebuilds_once_and_removes_the_older_entry(
    inner: InnerPytest, env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = inner.client
    record = tmp_path / "records"
    with cache_key(client) as (key, seen):
        monkeypatch.setenv("CACHE_KEY", key)
        inner.pytester.makepyfile(test_modes=MODES)
        first = inner.run("-p", "no:xdist")
        first.result.assert_outcomes(passed=4)
        (old,) = set(records(record).values())
        seen.add(old)
        assert_clean(first, old)
        assert len(lines(tmp_path / "builds.txt")) == 1

        for p in record.iterdir():
            p.unlink()
        run = inner.run("-n", "2", "--dockervol-cache=refresh")
        run.result.assert_outcomes(passed=4)
        names = set(records(record).values())
        seen.update(names)
        assert len(names) == 1, f"refresh: one entry for the whole run, got {names}"
        (new,) = names
        assert new != old
        assert len(lines(tmp_path / "builds.txt")) == 2, "rebuilt once, not once per worker"
        assert entries_of(client, key) == [new], "the older entry is gone"
        assert markers_of(client, old) == []
        assert len(markers_of(client, new)) == 1, "the refreshed entry is in the cache"
        assert_clean(run, new)


# -- 6. CLI ----------------------------------------------------------------------------------

SIMPLE = r"""
import os, pathlib

def test_use(volume_factory):
    golden = volume_factory.cached(os.environ["CACHE_KEY"], seed={"s.txt": "x" * 1000})
    (pathlib.Path(os.environ["RECORD_DIR"]) / "entry").write_text(golden.name)
"""


def build_simple_entry(
    inner: InnerPytest, key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """An inner run that builds a small complete entry for ``key``; its name."""
    monkeypatch.setenv("CACHE_KEY", key)
    inner.pytester.makepyfile(test_simple=SIMPLE)
    built = inner.run("-p", "no:xdist")
    built.result.assert_outcomes(passed=1)
    name = (tmp_path / "records" / "entry").read_text()
    assert_clean(built, name)
    return name


def test_cli_lists_the_cache_and_removes_only_unused_entries(
    inner: InnerPytest, env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = inner.client
    with cache_key(client) as (key, _seen):
        name = build_simple_entry(inner, key, tmp_path, monkeypatch)

        for args in (("ls", "--cache"), ("ls", "--cache", "--size")):
            listed = cli(*args)
            assert listed.returncode == 0, listed.stderr
            row = [line for line in listed.stdout.splitlines() if line.endswith(name)]
            assert len(row) == 1, listed.stdout
            assert row[0].startswith(key), row[0]
            assert " complete " in row[0], row[0]
        sized = next(line for line in listed.stdout.splitlines() if line.endswith(name))
        assert " MB " in sized, sized

        holder = client.containers.create(
            inner.image, "true", volumes={name: {"bind": "/v", "mode": "ro"}}
        )
        try:
            kept = cli("rm", "--cache", key)
            assert kept.returncode == 1, kept.stdout + kept.stderr
            holder_id = str(holder.id)[:12]
            assert f"kept cache entry {key!r} ({name}): in use by {holder_id}" in kept.stdout
            assert entries_of(client, key) == [name]
            assert len(markers_of(client, name)) == 1
        finally:
            holder.remove(force=True)

        removed = cli("rm", "--cache", key)
        assert removed.returncode == 0, removed.stdout + removed.stderr
        assert f"removed cache entry {key!r} ({name})" in removed.stdout
        assert entries_of(client, key) == []
        assert markers_of(client, name) == []
        again = cli("rm", "--cache", key)
        assert "no cache entry matched" in again.stdout


# -- 7. eviction -----------------------------------------------------------------------------


def test_entries_unused_for_cache_days_are_evicted_by_a_later_run(
    inner: InnerPytest, env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = inner.client
    with cache_key(client) as (key, _seen):
        name = build_simple_entry(inner, key, tmp_path, monkeypatch)
        assert entries_of(client, key) == [name]

        time.sleep(2)
        inner.pytester.makepyfile(test_simple="def test_touch(named_volume):\n    pass\n")
        run = inner.run("-p", "no:xdist", "--dockervol-cache-days=0.00001")
        run.result.assert_outcomes(passed=1)
        run.result.stdout.fnmatch_lines(
            [
                "*pytest-dockervol: reaped*",
                f"*golden cache entry {key!r} ({name}): unused * days*",
            ]
        )
        assert entries_of(client, key) == []
        assert markers_of(client, name) == []
        assert_clean(run)


def test_markers_of_an_entry_removed_by_hand_go_at_a_later_run(
    inner: InnerPytest, env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = inner.client
    with cache_key(client) as (key, seen):
        name = build_simple_entry(inner, key, tmp_path, monkeypatch)
        markers = markers_of(client, name)
        assert len(markers) == 1
        client.volumes.get(name).remove()  # `docker volume rm`: its marker stays
        seen.add(name)

        inner.pytester.makepyfile(test_simple="def test_touch(named_volume):\n    pass\n")
        run = inner.run("-p", "no:xdist")
        run.result.assert_outcomes(passed=1)
        assert markers_of(client, name) == []
        assert_clean(run)


# -- 8. two runs at once ---------------------------------------------------------------------

CONCURRENT = r"""
import os, pathlib, time

RECORD = pathlib.Path(os.environ["RECORD_DIR"])

def builder(volume):
    with open(os.environ["BUILD_LOG"], "a") as f:
        f.write(f"{os.getpid()}\n")
    time.sleep(2.5)  # the other run asks while this one builds
    volume.seed({"c.txt": "x"})
    (RECORD.parent / "built-at").write_text(repr(time.time()))

def test_use(volume_factory):
    (RECORD.parent / f"asked-{os.environ['WHO']}").write_text(repr(time.time()))
    golden = volume_factory.cached(os.environ["CACHE_KEY"], seed=builder)
    assert golden.files() == ["c.txt"]
    (RECORD / os.environ["WHO"]).write_text(golden.name)
"""


def test_two_runs_needing_the_same_missing_entry_build_it_once(
    inner: InnerPytest, env: dict[str, str], tmp_path: Path
) -> None:
    client = inner.client
    with cache_key(client) as (key, _seen):
        started = []
        for who in ("alpha", "beta"):
            workdir = tmp_path / who
            workdir.mkdir()
            (workdir / "test_concurrent.py").write_text(CONCURRENT)
            run_env = {**env, "CACHE_KEY": key, "WHO": who}
            started.append(start_run(workdir, run_env, "-p", "no:xdist"))
        for proc, log in started:
            assert "1 passed" in finish_run(proc, log)
        assert len(lines(tmp_path / "builds.txt")) == 1, "one build for the machine"
        asked = [float((tmp_path / f"asked-{who}").read_text()) for who in ("alpha", "beta")]
        built_at = float((tmp_path / "built-at").read_text())
        assert max(asked) < built_at, "both runs asked before the entry was built: they overlapped"
        got = records(tmp_path / "records")
        assert set(got) == {"alpha", "beta"}
        assert len(set(got.values())) == 1, got
        assert entries_of(client, key) == list(set(got.values()))

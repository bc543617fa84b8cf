"""The three function fixtures, seeded, attached to real containers and read back."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from conftest import InnerPytest, is_podman

INNER = r"""
import os, re, tarfile, io
import pytest
import docker
from pytest_dockervol import SeedFile
from inner_helpers import sh

def record(kind, name):
    with open(os.environ["RECORD"], "a") as f:
        f.write(f"{kind} {name}\n")

def test_named(named_volume, run_container):
    record("named", named_volume.name)
    named_volume.seed({"init/01.sql": "create table t(x int);", "bin/blob": b"\x00\xff"})
    assert named_volume.read_text("init/01.sql").startswith("create")
    assert named_volume.read_bytes("bin/blob") == b"\x00\xff"
    assert named_volume.files() == ["bin/blob", "init/01.sql"]
    out = sh(run_container, "cat /data/init/01.sql; echo; stat -c '%a %u' /data/init /data/init/01.sql; "
             "touch /data/x 2>/dev/null && echo WRITABLE || echo READONLY",
             named_volume.mount("/data", read_only=True))
    assert out.splitlines() == ["create table t(x int);", "755 0", "644 0", "READONLY"]

def test_named_volumes_dict_and_cli(named_volume, run_container):
    record("named", named_volume.name)
    assert named_volume.cli_spec("/d", read_only=True) == f"{named_volume.name}:/d:ro"
    out = sh(run_container, "echo hi > /d/from-container", volumes=named_volume.volumes_dict("/d"))
    assert named_volume.read_text("from-container") == "hi\n"

def test_anonymous(anonymous_volume, run_container, dockervol_client, volume_factory):
    record("anonymous", anonymous_volume.name)
    assert re.fullmatch(r"[0-9a-f]{64}", anonymous_volume.name)
    labels = dockervol_client.volumes.get(anonymous_volume.name).attrs["Labels"]
    if volume_factory.engine.is_podman:
        assert not labels  # Podman's Docker API labels no anonymous volume
    else:
        assert "com.docker.volume.anonymous" in labels
    anonymous_volume.seed({"a.txt": "A"}, uid=999, gid=998, file_mode=0o600)
    out = sh(run_container, "stat -c '%u %g %a' /m/a.txt", anonymous_volume.mount("/m"))
    assert out.strip() == "999 998 600"

def test_host(host_volume, run_container, tmp_path):
    record("host", host_volume.name)
    assert host_volume.path.is_relative_to(tmp_path)
    sh(run_container, "mkdir -p /logs/app && echo started > /logs/app/run.log",
       host_volume.mount("/logs"))
    assert (host_volume.path / "app" / "run.log").read_text() == "started\n"
    assert host_volume.files() == ["app/run.log"]
    assert host_volume.cli_spec("/logs") == f"{host_volume.path}:/logs:rw"

def test_each_fixture_is_fresh_and_empty(named_volume, anonymous_volume, host_volume):
    for vol in (named_volume, anonymous_volume, host_volume):
        record(vol.kind, vol.name)
        assert vol.files() == []
"""


def _recorded(path: Path) -> list[list[str]]:
    return [line.split(" ", 1) for line in path.read_text().splitlines()]


def test_fixtures_seed_attach_read_and_clean_up(
    inner: InnerPytest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = tmp_path / "record.txt"
    monkeypatch.setenv("RECORD", str(record))
    inner.pytester.makepyfile(test_inner=INNER)
    run = inner.run("-v")
    run.result.assert_outcomes(passed=5)
    assert run.leftovers() == []
    recorded = _recorded(record)
    assert len(recorded) == 7
    names = [name for _kind, name in recorded]
    assert len(set(names)) == len(names), "every fixture use gets its own volume"
    existing = {v.name for v in inner.client.volumes.list()}
    for kind, name in recorded:
        if kind == "host":
            assert not os.path.exists(name), f"{name} not removed"
        else:
            assert name not in existing, f"{kind} volume {name} not removed"
    generated = [name for kind, name in recorded if kind == "named"]
    for name in generated:
        assert re.fullmatch(rf"pdv-{run.run_id[:8]}-main-test_[a-z_]+-\d+", name), name


def test_under_xdist_each_worker_names_its_own(
    inner: InnerPytest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = tmp_path / "record.txt"
    monkeypatch.setenv("RECORD", str(record))
    inner.pytester.makepyfile(test_inner=INNER)
    run = inner.run("-n", "2")
    run.result.assert_outcomes(passed=5)
    assert run.leftovers() == []
    names = [name for _kind, name in _recorded(record)]
    assert len(set(names)) == len(names) == 7
    workers = {m.group(1) for n in names if (m := re.match(r"pdv-\w{8}-(gw\d)-", n))}
    assert workers
    assert workers <= {"gw0", "gw1"}


DIRECT = r"""
import os
from pytest_dockervol import SeedFile

def test_seed_path(volume_factory, dockervol_client, run_container):
    volume_factory.named(seed={"warm-up": "1"})  # the first one may probe the engine
    vol = volume_factory.named(seed={"d/run.sh": SeedFile("echo hi", mode=0o750), "d/e/f": "x"})
    vol.seed({"owned": "y"}, uid=999, gid=998)
    helpers = dockervol_client.containers.list(all=True, filters={"volume": vol.name})
    assert (not helpers) == (os.environ["EXPECT_DIRECT"] == "1")
    c = run_container(os.environ["DOCKERVOL_IMAGE"], ["sh", "-c",
        "stat -c '%n %a %u:%g' /v/d /v/d/run.sh /v/d/e /v/d/e/f /v/owned; cat /v/d/e/f"],
        mounts=[vol.mount("/v", read_only=True)])
    assert c.wait(timeout=60)["StatusCode"] == 0
    assert c.logs().decode().splitlines() == [
        "/v/d 755 0:0", "/v/d/run.sh 750 0:0", "/v/d/e 755 0:0", "/v/d/e/f 644 0:0",
        "/v/owned 644 999:998", "x"]
"""


@pytest.mark.parametrize("mode", ["auto", "never"])
def test_direct_seeding_matches_the_archive_api(
    inner: InnerPytest, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """As root on a local Docker engine, seeds are written straight into the volume's
    directory (no helper container); the result is the same as through the archive API."""
    direct = mode == "auto" and os.geteuid() == 0 and not is_podman(inner.client)
    monkeypatch.setenv("EXPECT_DIRECT", "1" if direct else "0")
    inner.pytester.makepyfile(test_direct=DIRECT)
    run = inner.run(f"--dockervol-direct={mode}")
    run.result.assert_outcomes(passed=1)
    assert run.leftovers() == []

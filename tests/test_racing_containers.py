"""A container that races the plugin on a host path it can write: planted links give a
clear error, never a write or a read outside the volume, whatever the timing (issue 12)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest
from conftest import InnerPytest

from pytest_dockervol import (
    ContainerRunner,
    DockervolError,
    HostVolume,
    NamedVolume,
    SeedWriteError,
    VolumeReadError,
)
from pytest_dockervol._seeding.sources import build_seed_plan

#: Long enough to see escapes in nearly every run of the old path-string writer (the
#: issue saw them within 10 s; this loop is tighter).
RACE_SECONDS = 6.0
SEED = {f"d/x{i}": b"seeded" for i in range(1000)}


def _swap_loop(victim: Path) -> list[str]:
    """A shell loop that keeps replacing the volume's ``d`` by a link to ``victim`` (the
    issue's loop also removed the link at once; leaving it makes escapes likelier)."""
    return ["sh", "-c", f"while :; do rm -rf /v/d; ln -s {victim} /v/d; done"]


#: Swaps ``d`` (a directory) and ``l`` (a link to the victim) atomically, as fast as it can:
#: no window in which ``d`` is missing, so a writer that resolves path strings escapes.
EXCHANGER = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
root, victim = sys.argv[1], sys.argv[2]
d, l = os.path.join(root, "d").encode(), os.path.join(root, "l").encode()
while True:
    if not os.path.lexists(l):
        os.symlink(victim, l)
    if not os.path.lexists(d):
        os.mkdir(d)
    libc.renameat2(-100, d, -100, l, 2)  # AT_FDCWD, RENAME_EXCHANGE
"""


@pytest.fixture
def exchanger() -> Iterator[Callable[[str, Path], None]]:
    """Start an attacker on the host that swaps ``root/d`` for a link to a victim, atomically
    (busybox has no renameat2; a host process is the same to the plugin as a container)."""
    started: list[subprocess.Popen[bytes]] = []

    def start(root: str, victim: Path) -> None:
        started.append(subprocess.Popen([sys.executable, "-c", EXCHANGER, root, str(victim)]))

    yield start
    for process in started:
        process.kill()
        process.wait()


def _race(seed_once: Callable[[], object]) -> tuple[int, int, list[str]]:
    """Seed in a loop for RACE_SECONDS: (successes, refusals, errors of another type)."""
    ok = refused = 0
    other: list[str] = []
    deadline = time.monotonic() + RACE_SECONDS
    while time.monotonic() < deadline:
        try:
            seed_once()
            ok += 1
        except SeedWriteError:
            refused += 1
        except Exception as exc:  # any other type is the failure reported
            other.append(f"{type(exc).__name__}: {exc}")
    return ok, refused, other


def test_host_seed_never_writes_through_a_link_planted_by_a_running_container(
    host_volume: HostVolume, run_container: ContainerRunner, image: str, tmp_path: Path
) -> None:
    victim = tmp_path / "victim" / "dir"
    victim.mkdir(parents=True)
    run_container(image, _swap_loop(victim), mounts=[host_volume.mount("/v")])
    ok, refused, other = _race(lambda: host_volume.seed(SEED))
    assert list(victim.iterdir()) == [], "a seed wrote outside the volume"
    assert not other, other[:3]
    assert ok + refused > 0


def test_host_seed_never_writes_through_an_atomically_exchanged_link(
    host_volume: HostVolume, exchanger: Callable[[str, Path], None], tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    exchanger(str(host_volume.path), victim)
    ok, refused, other = _race(lambda: host_volume.seed(SEED))
    assert list(victim.iterdir()) == [], "a seed wrote outside the volume"
    assert not other, other[:3]
    assert ok + refused > 0


def test_direct_writes_into_a_docker_volume_never_follow_a_planted_link(
    named_volume: NamedVolume,
    tmp_path: Path,
    docker_client: docker.DockerClient,
    exchanger: Callable[[str, Path], None],
) -> None:
    """The writer direct seeding uses, on a Docker volume's own directory while links are
    swapped into it (by a container that started after the plugin's check, say)."""
    mountpoint = docker_client.api.inspect_volume(named_volume.name)["Mountpoint"]
    victim = tmp_path / "victim"
    victim.mkdir()
    exchanger(mountpoint, victim)
    plan = build_seed_plan(SEED)
    ok, refused, other = _race(lambda: plan.write_to(mountpoint, volume=named_volume.name))
    assert ok + refused > 0
    assert list(victim.iterdir()) == [], "a direct seed wrote outside the volume"
    assert not other, other[:3]


@pytest.mark.parametrize("target", ["absolute", "relative"])
def test_host_read_refuses_a_link_in_the_middle_of_the_path(
    host_volume: HostVolume,
    run_container: ContainerRunner,
    image: str,
    tmp_path: Path,
    target: str,
) -> None:
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "file.txt").write_text("host secret")
    link = str(secret) if target == "absolute" else "../" * 20 + str(secret).lstrip("/")
    planted = run_container(image, ["ln", "-s", link, "/v/link"], mounts=[host_volume.mount("/v")])
    assert planted.wait(timeout=30)["StatusCode"] == 0
    with pytest.raises(VolumeReadError, match=r"'link' is a symbolic link.* on the way"):
        host_volume.read_text("link/file.txt")
    with pytest.raises(VolumeReadError, match="is a symbolic link"):
        host_volume.read_text("link")
    assert host_volume.files() == []


def test_host_read_while_links_are_exchanged_returns_only_the_volume_s_content(
    host_volume: HostVolume, exchanger: Callable[[str, Path], None], tmp_path: Path
) -> None:
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "f").write_text("host secret")
    host_volume.seed({"d/f": "mine"})
    exchanger(str(host_volume.path), secret)
    seen: set[str] = set()
    deadline = time.monotonic() + RACE_SECONDS / 2
    while time.monotonic() < deadline:
        with contextlib.suppress(DockervolError):
            seen.add(host_volume.read_text("d/f"))
        host_volume.files()  # lists while links come and go: never enters one
    assert "host secret" not in seen
    assert "mine" in seen


TEARDOWN_RACE = """
def test_container_requested_first_still_writes(run_container, host_volume):
    loop = "i=0; while :; do i=$((i+1)); mkdir -p /v/$1/b; echo x > /v/$1/b/f$i; done"
    writers = f"for n in 1 2 3 4; do sh -c '{{loop}}' - $n & done; wait"
    run_container({image!r}, ["sh", "-c", writers], mounts=[host_volume.mount("/v")])
    (host_volume.path / "keep-me-busy").write_text("x")
"""


def test_host_volume_teardown_removes_this_run_s_writers_first(inner: InnerPytest) -> None:
    """``run_container`` before ``host_volume``: its container outlives the volume's
    teardown and writes into the tree while it is deleted (ENOTEMPTY, ENOTDIR)."""
    inner.pytester.makepyfile(TEARDOWN_RACE.format(image=inner.image))
    run = inner.run("-rfEw")
    run.result.assert_outcomes(passed=1)
    assert "could not remove" not in run.result.stdout.str()
    assert run.leftovers() == []
    assert not list(inner.pytester.path.glob("**/host_volume"))

"""A project directory in a container: copied into a volume, or bound and left alone."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_dockervol import ContainerRunner, HostVolume, NamedVolume, VolumeFactory

AS_HOST_USER = f"{os.getuid()}:{os.getgid()}"

BUILD_SCRIPT = """#!/bin/sh
set -e
out="${OUT:-/out}"
mkdir -p "$out"
for page in /src/pages/*.txt; do
    tr a-z A-Z < "$page" > "$out/$(basename "$page" .txt).html"
done
echo "built $(ls "$out" | wc -l) pages"
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A small project checkout: a build script and its input files."""
    root = tmp_path / "project"
    (root / "pages").mkdir(parents=True)
    (root / "build.sh").write_text(BUILD_SCRIPT)
    (root / "build.sh").chmod(0o755)
    (root / "pages" / "index.txt").write_text("hello\n")
    (root / "pages" / "about.txt").write_text("about us\n")
    return root


def snapshot(directory: Path) -> dict[str, tuple[bytes, int, float]]:
    """Content, mode and mtime of every file under `directory`."""
    return {
        str(path.relative_to(directory)): (
            path.read_bytes(),
            path.stat().st_mode,
            path.stat().st_mtime,
        )
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def test_build_in_a_volume_seeded_from_the_checkout(
    project: Path,
    named_volume: NamedVolume,
    run_container: ContainerRunner,
    image: str,
    tmp_path: Path,
) -> None:
    named_volume.seed(project)  # a copy: the build cannot touch the checkout

    container = run_container(
        image,
        ["/src/build.sh"],  # still executable: seeding keeps the execute bit
        mounts=[named_volume.mount("/src")],
        environment={"OUT": "/src/dist"},
    )
    assert container.wait(timeout=60)["StatusCode"] == 0, container.logs().decode()

    # Bring the build's output back to the host.
    dist = tmp_path / "dist"
    dist.mkdir()
    for name in named_volume.files():
        if name.startswith("dist/"):
            (tmp_path / name).write_bytes(named_volume.read_bytes(name))
    assert sorted(path.name for path in dist.iterdir()) == ["about.html", "index.html"]
    assert (dist / "about.html").read_text() == "ABOUT US\n"
    assert not (project / "dist").exists()


def test_run_a_script_from_a_read_only_checkout(
    project: Path,
    volume_factory: VolumeFactory,
    host_volume: HostVolume,
    run_container: ContainerRunner,
    image: str,
) -> None:
    before = snapshot(project)
    source = volume_factory.host(path=project)  # an existing directory: bound, never deleted

    container = run_container(
        image,
        ["/src/build.sh"],
        mounts=[source.mount("/src", read_only=True), host_volume.mount("/out")],
        user=AS_HOST_USER,
    )
    assert container.wait(timeout=60)["StatusCode"] == 0, container.logs().decode()
    assert container.logs().decode() == "built 2 pages\n"
    assert host_volume.files() == ["about.html", "index.html"]
    assert host_volume.read_text("index.html") == "HELLO\n"

    source.remove()  # for a directory passed in, remove() only forgets it
    assert snapshot(project) == before


def test_the_container_sees_the_examples_directory_but_cannot_change_it(
    volume_factory: VolumeFactory, run_container: ContainerRunner, image: str
) -> None:
    here = Path(__file__)
    examples = volume_factory.host(path=here.parent)
    container = run_container(
        image,
        ["sh", "-c", f"head -n 1 /examples/{here.name} && touch /examples/{here.name}"],
        mounts=[examples.mount("/examples", read_only=True)],
    )
    assert container.wait(timeout=60)["StatusCode"] != 0
    first_line = here.read_text().splitlines()[0]
    assert container.logs(stderr=False).decode() == first_line + "\n"
    assert "Read-only file system" in container.logs(stdout=False).decode()


def test_a_writable_checkout_keeps_what_the_container_wrote(
    project: Path, volume_factory: VolumeFactory, run_container: ContainerRunner, image: str
) -> None:
    source = volume_factory.host(path=project)
    container = run_container(
        image,
        ["sh", "-c", "/src/build.sh > /src/build.log"],
        mounts=[source.mount("/src")],
        environment={"OUT": "/src/dist"},
        user=AS_HOST_USER,
    )
    assert container.wait(timeout=60)["StatusCode"] == 0
    source.remove()
    # Cleanup never deletes a directory you passed in, nor what containers wrote there.
    assert (project / "build.log").read_text() == "built 2 pages\n"
    assert sorted(path.name for path in (project / "dist").iterdir()) == [
        "about.html",
        "index.html",
    ]
    assert (project / "build.sh").read_text() == BUILD_SCRIPT

"""Where Podman's Docker API differs from Docker's, and what the plugin does about it.

Unit tests feed the readers both engines' archive shapes (no engine needed); the inner run
checks the differences on whichever engine DOCKER_HOST names (CI runs the suite on both:
`eval "$(bash .ci/podman.sh)"` for Podman).
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import InnerPytest

from pytest_dockervol import VolumeCopyError
from pytest_dockervol._engine.engine import Engine
from pytest_dockervol._runs.reaper import list_resources
from pytest_dockervol._seeding.tarstream import (
    checked_archive,
    iter_tar_members,
    list_files_in_tar,
    peek_first_name,
    read_file_from_tar,
)

# get_archive("/v") of a volume mounted at /v: Docker names the members after the
# directory asked for; Podman 4 names the mount point "" and the rest "/x".
DOCKER = ("v", "v/a", "v/a/b.txt", "v/z.txt", "v/a/hard")
PODMAN = ("", "/a", "/a/b.txt", "/z.txt", "/a/hard")


def archive(names: tuple[str, ...]) -> bytes:
    root, a, b_txt, z_txt, hard = names
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for name in (root, a):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tf.addfile(info)
        for name, data in ((b_txt, b"b"), (z_txt, b"z")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo(hard)
        info.type, info.linkname = tarfile.LNKTYPE, b_txt
        tf.addfile(info)
    return buf.getvalue()


def chunks(data: bytes, size: int = 100) -> Iterator[bytes]:
    return iter([data[i : i + size] for i in range(0, len(data), size)])


@pytest.mark.parametrize("names", [DOCKER, PODMAN], ids=["docker", "podman"])
def test_both_archive_shapes_read_alike(names: tuple[str, ...]) -> None:
    data = archive(names)
    assert list_files_in_tar(chunks(data)) == ["a/b.txt", "a/hard", "z.txt"]
    assert [path for path, _info in iter_tar_members(chunks(data))] == [
        "a",
        "a/b.txt",
        "z.txt",
        "a/hard",
    ]
    assert read_file_from_tar(chunks(data), "a/b.txt", volume="vol", within="a/b.txt") == b"b"


@pytest.mark.parametrize(
    ("names", "first"), [(DOCKER, "v"), (PODMAN, "")], ids=["docker", "podman"]
)
def test_first_name_is_peeked_without_losing_a_byte(names: tuple[str, ...], first: str) -> None:
    data = archive(names)
    name, stream = peek_first_name(chunks(data, 7))
    assert name == first
    assert b"".join(stream) == data


def test_podman_shape_is_checked_below_the_mount_point() -> None:
    data = archive(PODMAN)
    assert b"".join(checked_archive(chunks(data), root="")) == data
    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w") as tf:
        info = tarfile.TarInfo("/../etc/passwd")
        tf.addfile(info, io.BytesIO(b""))
    with pytest.raises(VolumeCopyError, match="outside"):
        b"".join(checked_archive(chunks(evil.getvalue()), root=""))


class _OrLabelFilters:
    """Podman 4 ORs several label filters on volumes: everything with any label comes back."""

    def __init__(self, volumes: list[dict[str, Any]]) -> None:
        self._volumes = volumes

    def containers(self, all: bool, filters: dict[str, Any]) -> list[dict[str, Any]]:
        return []

    def volumes(self, filters: dict[str, Any]) -> dict[str, Any]:
        return {"Volumes": self._volumes}


def test_list_resources_checks_every_label_itself() -> None:
    owner = {"pytest-dockervol.owner": "pytest-dockervol"}
    api = _OrLabelFilters(
        [
            {"Name": "mine", "Labels": {**owner, "pytest-dockervol.run": "r1"}},
            {"Name": "other-run", "Labels": {**owner, "pytest-dockervol.run": "r2"}},
            {"Name": "not-ours", "Labels": {"pytest-dockervol.run": "r1"}},
            {"Name": "unlabelled", "Labels": None},
        ]
    )
    client: Any = SimpleNamespace(api=api)  # the Engine asks its low-level client only
    engine = Engine(client, "unix:///fake.sock (a test)", {})
    assert [r.name for r in list_resources(engine, "r1")] == ["mine"]
    assert sorted(r.name for r in list_resources(engine)) == ["mine", "other-run"]


INNER = r"""
import os
import pytest
from pytest_dockervol import DockervolUsageError, EngineFeatureError
from inner_helpers import IMAGE


def test_helper_image_is_tagged_and_labelled(volume_factory, dockervol_client, named_volume):
    named_volume.files()  # makes the helper image if the engine has none yet
    labels = dockervol_client.images.get("pytest-dockervol-helper:1").labels
    assert labels["pytest-dockervol.owner"] == "pytest-dockervol"
    assert labels["pytest-dockervol.kind"] == "helper-image"


def test_names_with_pattern_characters_round_trip(named_volume, run_container):
    seed = {"a*b/c?d": "1", "x[1]": "2", "back\\slash": "3", "é ü/plain": "4"}
    named_volume.seed(seed)
    assert named_volume.files() == sorted(seed)
    for path, content in seed.items():
        assert named_volume.read_text(path) == content
    c = run_container(IMAGE, ["cat", "/m/a*b/c?d"], mounts=[named_volume.mount("/m")], network_mode="none")
    assert c.wait(timeout=60)["StatusCode"] == 0
    assert c.logs() == b"1"


def test_anonymous_volume_options(volume_factory, dockervol_client):
    if volume_factory.engine.is_podman:  # it would drop them without a word: refused
        with pytest.raises(EngineFeatureError, match="anonymous volume need Docker .Podman's"):
            volume_factory.anonymous(labels={"team": "db"})
        return
    volume = volume_factory.anonymous(labels={"team": "db"})
    assert dockervol_client.volumes.get(volume.name).attrs["Labels"]["team"] == "db"


def test_volume_with_mount_options(volume_factory, run_container, tmp_path):
    opts = {"type": "none", "o": "bind", "device": str(tmp_path)}
    bound = volume_factory.named(driver_opts=opts)
    if volume_factory.engine.is_podman:  # the archive API would miss the mount: refused
        with pytest.raises(DockervolUsageError, match="Podman mounts only for a running"):
            bound.seed({"f": "x"})
        return
    bound.seed({"f": "x"})
    assert (tmp_path / "f").read_text() == "x"
    c = run_container(IMAGE, ["cat", "/m/f"], mounts=[bound.mount("/m")], network_mode="none")
    assert c.wait(timeout=60)["StatusCode"] == 0
    assert c.logs() == b"x"
"""


def test_engine_differences_on_this_engine(inner: InnerPytest) -> None:
    inner.pytester.makepyfile(test_inner=INNER)
    run = inner.run("-v", "-W", "error::pytest_dockervol.DockervolCleanupWarning")
    run.result.assert_outcomes(passed=4)
    assert run.leftovers() == []

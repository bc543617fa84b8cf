"""Pure logic of copy-on-write volumes and of the golden cache's key, without an engine."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_dockervol import DockervolUsageError
from pytest_dockervol._cache.key import cache_digest, inputs_digest
from pytest_dockervol._seeding.sources import build_seed_plan
from pytest_dockervol._volumes.cow import (
    CannotLayer,
    lower_dirs,
    needs_labels,
    needs_of,
    overlay_options,
)

LAYER = "pytest-dockervol.layer"


def test_a_plain_local_volume_is_its_own_directory() -> None:
    info = {"Driver": "local", "Options": None, "Mountpoint": "/var/lib/docker/volumes/a/_data"}
    assert lower_dirs("a", info) == ["/var/lib/docker/volumes/a/_data"]


def test_an_overlay_clone_is_its_upper_then_its_lowers() -> None:
    options = overlay_options(["/d/b/_data/upper", "/d/a/_data"], "/d/c/_data")
    info = {"Driver": "local", "Options": options, "Labels": {LAYER: "c"}}
    assert lower_dirs("x", info) == ["/d/c/_data/upper", "/d/b/_data/upper", "/d/a/_data"]


@pytest.mark.parametrize(
    ("info", "why"),
    [
        ({"Driver": "nfs-plugin", "Options": {}}, "driver"),
        ({"Driver": "local", "Options": {"type": "tmpfs", "device": "tmpfs"}}, "driver options"),
        # an overlay the plugin did not make (no layer label): its layers are not known
        ({"Driver": "local", "Options": {"type": "overlay", "o": "lowerdir=/a"}}, "options"),
    ],
)
def test_volumes_that_cannot_be_a_lower_layer_say_why(info: dict[str, object], why: str) -> None:
    with pytest.raises(CannotLayer, match=why):
        lower_dirs("v", info)


@pytest.mark.parametrize(
    "path", ["/var/lib/do,cker/v/_data", "/var/lib/do:cker/v/_data", "relative/_data"]
)
def test_paths_mount_options_cannot_carry_are_refused(path: str) -> None:
    with pytest.raises(CannotLayer, match="characters"):
        overlay_options([path], "/d/layer/_data")


def test_too_many_layers_for_one_page_of_mount_options() -> None:
    lowers = [f"/var/lib/docker/volumes/{'x' * 60}-{i}/_data/upper" for i in range(60)]
    with pytest.raises(CannotLayer, match=r"mount options|layers"):
        overlay_options(lowers, "/d/layer/_data")


def test_needs_round_trip_through_labels() -> None:
    labels = {**needs_labels({"golden", "layer-1"}), "other": "x"}
    assert needs_of(labels) == {"golden", "layer-1"}


def _tree(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "a.sql").write_text("CREATE TABLE a (id int);")
    (root / "sub" / "b.sql").write_text("INSERT INTO a VALUES (1);")
    return root


def test_inputs_digest_follows_content_names_and_modes_not_times(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "in")
    first = inputs_digest([tree])
    os.utime(tree / "a.sql", (1, 1))
    assert inputs_digest([tree]) == first  # a checkout's times change, its content does not
    (tree / "a.sql").write_text("CREATE TABLE a (id bigint);")
    changed = inputs_digest([tree])
    assert changed != first
    (tree / "a.sql").chmod(0o600)
    assert inputs_digest([tree]) != changed
    (tree / "sub" / "b.sql").rename(tree / "sub" / "c.sql")
    assert inputs_digest([tree]) not in (first, changed)


def test_a_missing_input_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(DockervolUsageError, match=r"cache input .* cannot be read"):
        inputs_digest([tmp_path / "missing"])


def test_cache_digest_covers_key_version_seed_and_inputs(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "in")

    def digest(
        key: str = "k", version: str = "", seed: object = None, inputs: tuple[Path, ...] = ()
    ) -> str:
        return cache_digest(key, version=version, seed=seed, inputs=inputs)

    plan = build_seed_plan({"a.txt": "A"})
    same_plan = build_seed_plan({"a.txt": "A"})
    other_plan = build_seed_plan({"a.txt": "B"})
    base = digest(seed=plan)
    assert digest(seed=same_plan) == base
    assert (
        len(
            {
                base,
                digest(seed=other_plan),
                digest("k2", seed=plan),
                digest(version="2", seed=plan),
                digest(seed=plan, inputs=(tree,)),
                digest(seed=test_a_missing_input_is_a_usage_error),
            }
        )
        == 6
    )

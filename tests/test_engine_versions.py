"""What differs between the engine versions users run, and what the plugin does about it.

CI runs this file on Docker 20.10 (API 1.41), Docker 26.1 (API 1.45), a Docker 26.1 that
refuses clients below API 1.44 (as Docker 29.0-29.2 do) and Podman 4.3 (API 1.41). Each
engine test asserts what is right for the engine it runs on, so each branch is proven by
the pass whose engine has it.

- Volume subpath mounts (API 1.45): older engines and Podman 4 ignore the field and mount
  the whole volume, so the plugin refuses them before it asks.
- ``docker volume prune`` (API 1.42): Docker 23+ removes only volumes labelled anonymous
  unless ``--all``; the plugin labels its anonymous volumes so they count as anonymous.
- The SDK: no version is pinned, and docker 7.2's own reading of the CLI context is not
  what chooses the engine.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import docker
import docker.errors
import pytest
from conftest import InnerPytest, cli, is_podman, leftovers, remove_run
from docker.context.config import get_context_id

from pytest_dockervol import DockervolUsageError, EngineVersionError, HostVolume
from pytest_dockervol._engine.engine import SUBPATH_MOUNTS, Engine, api_version_tuple
from pytest_dockervol._engine.labels import ANONYMOUS_VOLUME_LABEL, LABEL_KIND, LABEL_RUN
from pytest_dockervol._volumes.base import check_subpath, mount_argument


def engine_api(client: docker.DockerClient) -> tuple[int, int]:
    return api_version_tuple(str(client.version()["ApiVersion"]))


# -- pure: versions, subpaths, the --mount argument --------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1.41", (1, 41)), ("1.45", (1, 45)), (" 1.9 ", (1, 9)), ("1.52", (1, 52)), ("?", (0, 0))],
)
def test_api_versions_compare_as_numbers(text: str, expected: tuple[int, int]) -> None:
    assert api_version_tuple(text) == expected
    assert api_version_tuple("1.9") < api_version_tuple("1.45")


def engine_of(version: str, api: str, *, podman: bool = False) -> Engine:
    """An Engine as ``Engine.connect`` makes it, for a client that never asks anything."""
    client = docker.DockerClient(base_url="unix:///nonexistent.sock", version=api)
    components = [{"Name": "Podman Engine"}] if podman else []
    return Engine(
        client,
        "unix:///x.sock (here)",
        {"Version": version, "ApiVersion": api, "Components": components},
    )


def test_a_feature_newer_than_the_engine_is_one_line_naming_both_versions() -> None:
    engine_of("26.1.5", "1.45").require(SUBPATH_MOUNTS)
    engine_of("29.0.0", "1.52").require(SUBPATH_MOUNTS)
    with pytest.raises(EngineVersionError) as refused:
        engine_of("20.10.24", "1.41").require(SUBPATH_MOUNTS)
    assert str(refused.value) == (
        "volume subpath mounts need Docker 26.0 or newer (API 1.45); this engine is Docker "
        "20.10.24 (API 1.41) at unix:///x.sock (here); upgrade the engine, or mount the whole "
        "volume and use the directory inside it"
    )
    with pytest.raises(EngineVersionError, match=r"this engine is Podman 4\.3\.1 \(API 1\.41\)"):
        engine_of("4.3.1", "1.41", podman=True).require(SUBPATH_MOUNTS)


@pytest.mark.parametrize(
    ("subpath", "why"),
    [
        ("/etc", "is absolute"),
        ("../x", "escapes the volume"),
        ("a/../..", "escapes the volume"),
        (".", "names the volume root itself"),
        ("", "is empty"),
        ("a\nb", "contains a newline"),
        (7, "is not a string"),
    ],
)
def test_a_bad_subpath_is_one_line_naming_the_fix(subpath: object, why: str) -> None:
    with pytest.raises(DockervolUsageError) as refused:
        check_subpath(subpath)
    assert why in str(refused.value)
    assert str(refused.value).endswith("name a directory inside the volume, e.g. subpath='conf'")
    assert "\n" not in str(refused.value)


def test_subpaths_are_normalized() -> None:
    assert check_subpath("./conf/") == "conf"
    assert check_subpath("a//b/../c") == "a/c"


def test_the_mount_argument_quotes_what_the_cli_would_split() -> None:
    plain = ["type=volume", "source=v", "target=/d", "volume-subpath=conf"]
    assert mount_argument(plain) == "type=volume,source=v,target=/d,volume-subpath=conf"
    assert mount_argument(["target=/a,b", 'volume-subpath=say "hi"']) == (
        '"target=/a,b","volume-subpath=say ""hi"""'
    )


def test_a_host_volume_has_no_subpath_mounts(tmp_path: Path) -> None:
    volume = HostVolume(tmp_path, owned=False)
    assert volume.mount("/d")["Source"] == str(tmp_path)
    with pytest.raises(DockervolUsageError, match=r"subpath mounts are for Docker volumes"):
        volume.mount("/d", subpath="conf")
    with pytest.raises(DockervolUsageError, match=r"subpath mounts are for Docker volumes"):
        volume.cli_spec("/d", subpath="conf")


# -- subpath mounts on this engine -------------------------------------------------------------

SUBPATH_COMMON = r"""
import os
import pytest
from pytest_dockervol import DockervolUsageError, EngineVersionError
from inner_helpers import IMAGE, sh

SEED = {"conf/app.ini": "x=1", "data/rows": "secret"}


def test_the_path_is_checked_first_on_every_engine(named_volume):
    with pytest.raises(DockervolUsageError, match="escapes the volume"):
        named_volume.mount("/c", subpath="../x")
"""

SUBPATH_MOUNTED = r"""
import subprocess
import docker.errors


def test_the_container_sees_only_that_directory(volume_factory, run_container):
    volume = volume_factory.named(seed=SEED)
    out = sh(run_container, "ls -A /etc/app; echo y=2 > /etc/app/new.ini",
             volume.mount("/etc/app", subpath="conf"))
    assert out.split() == ["app.ini"]
    assert volume.files() == ["conf/app.ini", "conf/new.ini", "data/rows"]
    assert volume.read_text("conf/new.ini") == "y=2\n"


def test_read_only_and_normalized(named_volume, run_container):
    named_volume.seed(SEED)
    out = sh(run_container, "cat /c/app.ini; echo; touch /c/x 2>/dev/null && echo WRITABLE || echo READONLY",
             named_volume.mount("/c", read_only=True, subpath="./conf/"))
    assert out.split() == ["x=1", "READONLY"]


def test_a_clone_mounts_a_directory_of_its_own(volume_factory, run_container):
    golden = volume_factory.named(seed=SEED)
    clone = volume_factory.clone_of(golden)
    sh(run_container, "echo changed > /c/app.ini", clone.mount("/c", subpath="conf"))
    assert clone.read_text("conf/app.ini") == "changed\n"
    assert golden.read_text("conf/app.ini") == "x=1"


def test_a_cached_golden_mounts_a_directory_read_only(volume_factory, run_container):
    golden = volume_factory.cached("subpath-golden", seed=SEED)  # built for this run only
    out = sh(run_container, "cat /c/app.ini; echo; touch /c/x 2>/dev/null && echo WRITABLE || echo READONLY",
             golden.mount("/c", subpath="conf"))
    assert out.split() == ["x=1", "READONLY"]
    assert golden.cli_spec("/c", subpath="conf").endswith(",volume-subpath=conf,readonly")


def test_a_missing_directory_fails_at_start(named_volume, run_container):
    with pytest.raises(docker.errors.APIError, match="no such file or directory"):
        run_container(IMAGE, ["true"], mounts=[named_volume.mount("/c", subpath="missing")])


def test_the_docker_cli_takes_the_mount_argument(named_volume):
    named_volume.seed(SEED)
    spec = named_volume.cli_spec("/etc/my,app", read_only=True, subpath="conf")
    assert spec == (f'type=volume,source={named_volume.name},"target=/etc/my,app",'
                    "volume-subpath=conf,readonly")
    done = subprocess.run(
        ["docker", "run", "--rm", "--label", os.environ["CLI_LABEL"], "--network", "none",
         "--mount", spec, IMAGE, "cat", "/etc/my,app/app.ini"],
        capture_output=True, text=True, timeout=60,
    )
    assert (done.returncode, done.stdout) == (0, "x=1"), done.stderr
"""

SUBPATH_REFUSED = r"""
def test_refused_in_one_line_naming_the_engine_needed(volume_factory, named_volume):
    named_volume.seed(SEED)
    for attempt in (lambda: named_volume.mount("/c", subpath="conf"),
                    lambda: named_volume.cli_spec("/c", subpath="conf"),
                    lambda: volume_factory.clone_of(named_volume).mount("/c", subpath="conf")):
        with pytest.raises(EngineVersionError) as refused:
            attempt()
        assert str(refused.value) == (
            "volume subpath mounts need Docker 26.0 or newer (API 1.45); this engine is "
            f"{volume_factory.engine.describe()}; upgrade the engine, or mount the whole volume "
            "and use the directory inside it"
        )
"""


def test_subpath_mounts_on_this_engine(
    inner: InnerPytest, docker_client: docker.DockerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """API 1.45+: the container sees that directory only (the CLI's ``--mount`` too). Older
    engines and Podman would mount the whole volume without a word: refused, naming the
    version needed, before anything is created."""
    mounted = engine_api(docker_client) >= (1, 45) and not is_podman(docker_client)
    label = f"pytest-dockervol-test.cli={uuid.uuid4().hex}"
    monkeypatch.setenv("CLI_LABEL", label)  # the inner run's CLI container carries it
    try:
        inner.pytester.makepyfile(
            test_subpath=SUBPATH_COMMON + (SUBPATH_MOUNTED if mounted else SUBPATH_REFUSED)
        )
        run = inner.run("-v", "--dockervol-cache=off")  # the golden goes with the run
        run.result.assert_outcomes(passed=7 if mounted else 2)
        assert run.leftovers() == []
    finally:
        for container in docker_client.containers.list(all=True, filters={"label": label}):
            container.remove(force=True)


# -- what `docker volume prune` takes ---------------------------------------------------------

PRUNE = r"""
def test_keep(named_volume, anonymous_volume):
    named_volume.seed({"n": "1"})
    anonymous_volume.seed({"a": "1"})
"""


def test_a_users_volume_prune_takes_what_this_engine_counts_as_anonymous(
    inner: InnerPytest, docker_client: docker.DockerClient
) -> None:
    """Docker 23+ (API 1.42) prunes only volumes labelled anonymous, unless ``--all``: the
    plugin's anonymous volumes carry that label, its named ones (goldens, a kept run's
    volumes) stay. Docker 20.10 and Podman prune every unused volume. The prune is scoped
    to the inner run's label: nothing else on the engine is touched."""
    inner.pytester.makepyfile(test_prune=PRUNE)
    run = inner.run("--dockervol-keep")
    try:
        run.result.assert_outcomes(passed=1)
        label = f"{LABEL_RUN}={run.run_id}"
        volumes = docker_client.api.volumes(filters={"label": label})["Volumes"] or []
        kinds = {v["Name"]: (v.get("Labels") or {}).get(LABEL_KIND) for v in volumes}
        anonymous = {name for name, kind in kinds.items() if kind == "anonymous"}
        podman = is_podman(docker_client)
        # Podman labels no anonymous volume (its anchor keeps it); Docker has ours.
        assert len(anonymous) == (0 if podman else 1), kinds
        for name in anonymous:
            labels = docker_client.api.inspect_volume(name)["Labels"]
            assert ANONYMOUS_VOLUME_LABEL in labels
        pruned = set(
            docker_client.api.prune_volumes(filters={"label": label})["VolumesDeleted"] or []
        )
        if engine_api(docker_client) >= (1, 42) and not podman:
            assert pruned == anonymous, kinds
        else:
            assert pruned == set(kinds), kinds  # every unused volume, the kept marker too
    finally:
        cli("rm", "--run", run.run_id)
        remove_run(docker_client, run.run_id)


# -- the SDK: the engine the CLI would use, at the version it speaks ---------------------------


def test_docker_config_wins_over_home_as_for_the_cli(
    inner: InnerPytest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DOCKER_CONFIG without a config file: the default socket, as for the docker CLI,
    even when ~/.docker names a current context. docker 7.2's ``from_env`` reads
    ``~/.docker`` on its own and would go to that context's engine instead."""
    home = tmp_path / "home"
    context_dir = home / ".docker" / "contexts" / "meta"
    (home / ".docker").mkdir(parents=True)
    (home / ".docker" / "config.json").write_text(json.dumps({"currentContext": "elsewhere"}))
    meta = {
        "Name": "elsewhere",
        "Metadata": {},
        "Endpoints": {"docker": {"Host": "unix:///nowhere.sock"}},
    }
    (context_dir / get_context_id("elsewhere")).mkdir(parents=True)
    (context_dir / get_context_id("elsewhere") / "meta.json").write_text(json.dumps(meta))
    (tmp_path / "config").mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "config"))
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    default = docker.DockerClient(base_url="unix:///var/run/docker.sock")
    try:
        default.ping()
    except docker.errors.DockerException as exc:
        pytest.fail(f"this test needs an engine at the default socket: {exc}", pytrace=False)
    inner.pytester.makepyfile(
        test_default="def test_seed(named_volume):\n    named_volume.seed({'f': 'x'}).files()\n"
    )
    run = inner.run()
    run.result.assert_outcomes(passed=1)
    header = re.search(r"dockervol: run \w+, engine (.*)", run.result.stdout.str())
    assert header, run.result.stdout.str()
    assert header.group(1).endswith(
        "at unix:///var/run/docker.sock (the default; DOCKER_HOST is not set)"
    )
    assert leftovers(default, run.run_id) == []
    default.close()

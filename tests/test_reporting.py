"""What users see: no engine, bad options, --dockervol-keep, and teardown problems."""

from __future__ import annotations

import re

import pytest
from conftest import InnerPytest, cli, is_podman


def test_no_engine_is_one_clear_line_per_test_not_a_skip(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    pytester.makepyfile(
        """
        def test_a(named_volume): pass
        def test_b(anonymous_volume): pass
        def test_c(dockervol_client): pass
        def test_no_docker_needed(host_volume):
            host_volume.seed({"x": "1"})
            assert host_volume.files() == ["x"]
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=3)
    line = (
        "cannot reach a Docker engine at unix:///nonexistent/docker.sock "
        "(from DOCKER_HOST) (FileNotFoundError: No such file or directory); start dockerd "
        "or point DOCKER_HOST at a running engine"
    )
    assert result.stdout.lines.count(line) == 3
    assert "Traceback" not in result.stdout.str()
    assert "During handling" not in result.stdout.str()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dockervol-prefix=bad prefix"], "dockervol_prefix 'bad prefix' is not usable"),
        (["--dockervol-timeout=soon"], "dockervol_timeout 'soon' is not a number of seconds"),
        (["--dockervol-timeout=0"], "dockervol_timeout '0' is not a number of seconds"),
        (["-o", "dockervol_prefix=-x"], "dockervol_prefix '-x' is not usable"),
        (["--dockervol-reap-after=-1"], "dockervol_reap_after '-1' is not a number of hours"),
        (["-o", "dockervol_direct=always"], "dockervol_direct 'always' is not one of auto, never"),
        (["-o", "dockervol_clone=cow"], "dockervol_clone 'cow' is not one of auto, copy"),
        (["-o", "dockervol_cache=keep"], "dockervol_cache 'keep' is not one of use, refresh, off"),
        (["--dockervol-cache-days=0"], "dockervol_cache_days '0' is not a number of days"),
    ],
)
def test_bad_option_values_are_usage_errors(
    pytester: pytest.Pytester, args: list[str], message: str
) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest_subprocess(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}*"])


def test_keep_lists_names_and_leaves_them_until_the_cli_removes_them(inner: InnerPytest) -> None:
    inner.pytester.makepyfile(
        """
        def test_k(named_volume, anonymous_volume, volume_factory):
            named_volume.seed({"kept.txt": "still here"})
            volume_factory.named(name=None)
        """
    )
    inner.pytester.makeini("[pytest]\ndockervol_prefix = keep\n")
    run = inner.run("--dockervol-keep", "-n", "2")
    run.result.assert_outcomes(passed=1)
    run.result.stdout.fnmatch_lines(["*pytest-dockervol: kept (--dockervol-keep)*"])
    out = run.result.stdout.str()
    kept = re.findall(r"^(named|anonymous) +(\S+)$", out, re.M)
    # Podman labels no anonymous volume: its anchor stays, listed as what removes both.
    anchored = re.findall(
        r"^helper +\S+ +anchors (\S+): `docker rm -v \S+` removes both$", out, re.M
    )
    assert len(kept) + len(anchored) == 3, out
    assert len(anchored) == (1 if is_podman(inner.client) else 0), out
    for name in [name for _kind, name in kept] + anchored:
        inner.client.volumes.get(name)
    assert all(n.startswith("keep-") for k, n in kept if k == "named")
    assert len(run.leftovers()) >= 3
    # Neither a later run's reaper nor a plain `rm` takes kept resources ...
    listed = cli("ls")
    assert f"run {run.run_id}" in listed.stdout
    assert "kept: ended with --dockervol-keep" in listed.stdout
    assert cli("rm").returncode == 0
    assert len(run.leftovers()) >= 3
    # ... `rm --run ID` does.
    removed = cli("rm", "--run", run.run_id)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert run.leftovers() == []


def test_volume_held_by_a_foreign_container_is_reported_not_forced(inner: InnerPytest) -> None:
    inner.pytester.makepyfile(
        """
        import os
        def test_leaves_container(named_volume, dockervol_client):
            c = dockervol_client.containers.create(
                os.environ["DOCKERVOL_IMAGE"], ["true"], name=named_volume.name + "-user",
                mounts=[named_volume.mount("/d")])
        def test_after():
            pass
        """
    )
    run = inner.run("-rA")
    left = run.leftovers()
    try:
        run.result.assert_outcomes(passed=2, warnings=1)
        run.result.stdout.fnmatch_lines(
            [
                "*DockervolCleanupWarning: pytest-dockervol: could not remove volume pdv-*: "
                "still in use by container(s) not created by pytest-dockervol: pdv-*-user "
                "(created); remove those containers at the end of the test",
            ]
        )
        assert len(left) == 1
        assert left[0].startswith("volume ")
        foreign = inner.client.containers.get(left[0].split()[1] + "-user")
        assert foreign.status == "created", (
            "the plugin must not remove a container it did not create"
        )
    finally:  # this test made the foreign container: it cleans up, the plugin must not
        for item in left:
            kind, name = item.split(" ", 1)
            if kind == "volume":
                for user in inner.client.containers.list(all=True, filters={"volume": name}):
                    user.remove(force=True)
                inner.client.volumes.get(name).remove()


def test_header_names_engine_version_and_run(inner: InnerPytest) -> None:
    inner.pytester.makepyfile("def test_x(): pass")
    run = inner.run()
    version = inner.client.version()
    run.result.stdout.fnmatch_lines(
        [
            f"dockervol: run {run.run_id}, engine * {version['Version']} (API {version['ApiVersion']}) at *"
        ]
    )


def test_failed_test_report_lists_what_the_container_saw(inner: InnerPytest) -> None:
    inner.pytester.makepyfile(
        """
        import os
        def test_fails(named_volume, host_volume, run_container):
            named_volume.seed({"etc/app.conf": "port=1", "data/big.bin": b"x" * 5000}, uid=999)
            host_volume.seed({"log/out.txt": "hello"})
            assert named_volume.read_text("etc/app.conf") == "port=2"

        def test_bounded(named_volume):
            named_volume.seed({f"f{i:03}": "" for i in range(100)})
            assert False
        """
    )
    run = inner.run("-rA")
    run.result.assert_outcomes(failed=2)
    # Podman's archives carry no owners: the listing says so rather than show root's.
    owner = "    ?:?    " if is_podman(inner.client) else "  999:0    "
    run.result.stdout.fnmatch_lines(
        [
            "*- dockervol named volume pdv-*-test_fails-* (named_volume) -*",
            f"drwxr-xr-x {owner}*data",
            f"-rw-r--r-- {owner}       5000  data/big.bin",
            f"-rw-r--r-- {owner}          6  etc/app.conf",
            "*- dockervol host volume */host_volume (host_volume) -*",
            "-rw-r--r--*log/out.txt",
        ]
    )
    run.result.stdout.fnmatch_lines(["... (listing stopped at 60 entries)"])
    assert run.leftovers() == []


def test_engine_refusal_is_one_line(inner: InnerPytest) -> None:
    inner.pytester.makepyfile(
        """
        import pytest
        from pytest_dockervol import EngineFeatureError, EngineRefusedError
        def test_bad_driver(volume_factory):
            with pytest.raises(EngineRefusedError) as info:
                volume_factory.named(driver_opts={"bogus": "x"})
            assert str(info.value).startswith("the Docker engine refused to create volume pdv-")
            assert str(info.value).endswith("check the driver and driver_opts")
            assert "\\n" not in str(info.value)
            if volume_factory.engine.is_podman:  # refused before it is asked: see test_engines
                with pytest.raises(EngineFeatureError, match="Podman's Docker API ignores them"):
                    volume_factory.anonymous(driver_opts={"bogus": "x"})
                return
            with pytest.raises(EngineRefusedError, match="refused to create an anonymous volume"):
                volume_factory.anonymous(driver_opts={"bogus": "x"})
        """
    )
    run = inner.run()
    run.result.assert_outcomes(passed=1)
    assert run.leftovers() == []

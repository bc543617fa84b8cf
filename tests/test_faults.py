"""Engine faults on a private engine: stopped mid-run, paused (slow), 404/409 at teardown;
and remote-daemon mode over TCP on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from conftest import leftovers
from engines import PrivateEngine

ENGINES_PY = Path(__file__).with_name("engines.py")


@pytest.fixture(scope="module")
def private_engine() -> PrivateEngine:
    engine = PrivateEngine()
    engine.start()
    return engine


@pytest.fixture
def private_client(private_engine: PrivateEngine) -> Iterator[docker.DockerClient]:
    client = docker.DockerClient(base_url=private_engine.unix)
    yield client
    client.close()


@pytest.fixture(autouse=True)
def _restore_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests here point DOCKER_HOST (inherited by inner runs) at the private engine."""
    for name in ("DOCKER_HOST", "ENGINE_PID"):
        original = os.environ.get(name)
        monkeypatch.setenv(name, original or "")  # records what to restore, unset included
        if original is None:
            monkeypatch.delenv(name)


def _run(pytester: pytest.Pytester, host: str, *args: str) -> tuple[pytest.RunResult, str]:
    os.environ["DOCKER_HOST"] = host  # inner runs inherit it; see _restore_environment
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA", *args)
    match = re.search(r"dockervol: run ([0-9a-f]{32})", result.stdout.str())
    assert match, result.stdout.str()
    return result, match.group(1)


def test_engine_stopped_mid_run_is_reported_and_reaped_by_the_next_run(
    pytester: pytest.Pytester,
    private_engine: PrivateEngine,
    private_client: docker.DockerClient,
    image: str,
) -> None:
    pytester.makepyfile(
        f"""
        import subprocess, sys
        def test_engine_goes_away(named_volume, anonymous_volume):
            named_volume.seed({{"data.txt": "x"}})
            anonymous_volume.seed({{"data.txt": "y"}})
            subprocess.run([sys.executable, {str(ENGINES_PY)!r}, "stop"], check=True)

        def test_later_test_gets_one_line(named_volume):
            pass
        """
    )
    try:
        result, run_id = _run(pytester, private_engine.unix)
    finally:
        private_engine.start()
    result.assert_outcomes(passed=1, errors=1)
    out = result.stdout.str()
    assert "Traceback" not in out
    result.stdout.fnmatch_lines(
        [
            "the Docker engine at unix://*private-engine/docker.sock (from DOCKER_HOST) did not "
            "answer (FileNotFoundError: No such file or directory); check that it is running*",
            "*DockervolCleanupWarning: pytest-dockervol: could not remove anonymous volume *: the "
            "engine at unix://*private-engine/docker.sock (from DOCKER_HOST) did not answer "
            "(FileNotFoundError: No such file or directory)",
            "*DockervolCleanupWarning: pytest-dockervol: could not remove named volume pdv-*",
            "*pytest-dockervol: could not remove*",
            "pytest-dockervol: could not remove anonymous volume *",
            "pytest-dockervol: could not remove named volume *",
            f"pytest-dockervol: final sweep of run {run_id} failed: the engine at *",
        ]
    )
    summary = [x for x in result.stdout.lines if x.startswith("pytest-dockervol: could not remove")]
    assert len(summary) == 2, "one line per volume, though the test and the session both tried"
    left = leftovers(private_client, run_id)
    assert left, "the stopped engine kept the first run's volumes"
    # The next run on that engine reaps them: the first run's process is gone.
    pytester.makepyfile(test_next="def test_next(named_volume):\n    pass\n")
    result2, run2 = _run(pytester, private_engine.unix, "test_next.py")
    result2.assert_outcomes(passed=1)
    # (an anonymous volume goes with its anchor container, so it is not counted on its own)
    result2.stdout.fnmatch_lines([f"run {run_id}: removed * resource(s) it left behind (*)"])
    assert leftovers(private_client, run_id) == []
    assert leftovers(private_client, run2) == []


def test_paused_engine_times_out_in_one_line(
    pytester: pytest.Pytester, private_engine: PrivateEngine, private_client: docker.DockerClient
) -> None:
    pytester.makepyfile(
        """
        import os, signal
        def test_slow(named_volume):
            named_volume.seed({"a": "1"})
            os.kill(int(os.environ["ENGINE_PID"]), signal.SIGSTOP)

        def test_after(named_volume):
            pass
        """
    )
    os.environ["ENGINE_PID"] = str(private_engine.pid)
    try:
        result, run_id = _run(pytester, private_engine.unix, "--dockervol-timeout=2")
    finally:
        private_engine.resume()
    out = result.stdout.str()
    assert "Traceback" not in out
    result.stdout.fnmatch_lines(
        ["*did not answer (*timed out*); check that it is running, or raise --dockervol-timeout*"]
    )
    # Whatever the pause left behind goes with the next run (or right now, by the CLI).
    cli = subprocess.run(
        [sys.executable, "-m", "pytest_dockervol", "rm", "--run", run_id],
        env={**os.environ, "DOCKER_HOST": private_engine.unix},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert leftovers(private_client, run_id) == []


def test_volume_removed_behind_our_back_is_fine(
    pytester: pytest.Pytester, private_engine: PrivateEngine, private_client: docker.DockerClient
) -> None:
    pytester.makepyfile(
        """
        def test_user_removes_it_first(named_volume, dockervol_client):
            named_volume.files()  # creates the helper container
            for c in dockervol_client.containers.list(all=True, filters={"volume": named_volume.name}):
                c.remove(force=True)
            dockervol_client.volumes.get(named_volume.name).remove()  # 404 at teardown
        """
    )
    result, run_id = _run(
        pytester, private_engine.unix, "-W", "error::pytest_dockervol.DockervolCleanupWarning"
    )
    result.assert_outcomes(passed=1)
    assert leftovers(private_client, run_id) == []


CORE_FILES = ("test_fixtures.py", "test_factory.py", "test_parallel.py")


def test_core_suite_over_tcp(private_engine: PrivateEngine, image: str) -> None:
    """Remote-daemon mode: the core tests against the engine's TCP listener on 127.0.0.1
    (host volumes work: the engine reports this machine's host name)."""
    tests = Path(__file__).parent
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            *(str(tests / name) for name in CORE_FILES),
            "-k",
            "not concurrent",
        ],
        env={**os.environ, "DOCKER_HOST": private_engine.tcp},
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tests.parent,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert re.search(r"\d+ passed", result.stdout)


def test_remote_engine_refuses_host_volumes(
    pytester: pytest.Pytester, private_engine: PrivateEngine
) -> None:
    """An engine that reports another machine's name cannot bind our paths: one clear line."""
    pytester.makeconftest(
        """
        import pytest
        from pytest_dockervol._engine.engine import Engine
        @pytest.fixture(autouse=True)
        def elsewhere(monkeypatch):
            monkeypatch.setattr(Engine, "engine_host", property(lambda self: "build-host-7"))
        """
    )
    pytester.makepyfile(
        """
        def test_host(host_volume):
            pass
        def test_named_still_fine(named_volume):
            named_volume.seed({"a": "b"})
        """
    )
    result, run_id = _run(pytester, private_engine.tcp)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "host volumes need an engine on this machine, but the engine at tcp://127.0.0.1:* "
            "runs on 'build-host-7'; use named_volume or anonymous_volume instead"
        ]
    )
    with contextlib.closing(docker.DockerClient(base_url=private_engine.unix)) as client:
        assert leftovers(client, run_id) == []

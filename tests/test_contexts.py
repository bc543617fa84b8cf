"""Docker CLI contexts: without DOCKER_HOST the plugin uses the engine of the CLI's context
(DOCKER_CONTEXT, else ``currentContext`` in $DOCKER_CONFIG/config.json), names it in the
header and in every "cannot reach" error, and never falls back to the default socket.

Contexts are made by the ``docker`` CLI in a temporary DOCKER_CONFIG and point at the
engine the outer suite uses (DOCKER_HOST, else the default socket); inner runs that must
go through a context run with DOCKER_HOST unset.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest
from conftest import InnerPytest, cli, leftovers, remove_run
from loopback import ENGINE, LoopbackProxy, engine_socket
from sshengine import SshEngine

from pytest_dockervol._endpoint import DEFAULT_ADDRESS, connect_client

SEED_AND_READ = """
def test_volume(named_volume):
    named_volume.seed({"a.txt": "through the context"})
    assert named_volume.read_text("a.txt") == "through the context"
"""

NEEDS_ENGINE = "def test_volume(named_volume): pass\n"


# -- helpers ---------------------------------------------------------------------------------


@dataclass
class CliConfig:
    """A temporary Docker CLI configuration directory (DOCKER_CONFIG for inner runs)."""

    path: Path

    def docker(self, *args: str) -> None:
        """``docker --config DIR ARGS``; DOCKER_HOST/DOCKER_CONTEXT would only confuse it."""
        env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "DOCKER_CONTEXT")}
        done = subprocess.run(
            ["docker", "--config", str(self.path), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert done.returncode == 0, f"docker {' '.join(args)}: {done.stderr}"

    def create(self, name: str, host: str) -> str:
        self.docker("context", "create", name, "--docker", f"host={host}")
        return name


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliConfig:
    """A fresh DOCKER_CONFIG (removed with tmp_path); no DOCKER_CONTEXT from outside."""
    path = tmp_path / "cfg"
    monkeypatch.setenv("DOCKER_CONFIG", str(path))
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    return CliConfig(path)


def linked_engine(tmp_path: Path) -> str:
    """A second path to the outer engine's socket (a symlink): a context pointing there can
    only be reached through the context, never by the default socket by accident."""
    link = tmp_path / "engine.sock"
    link.symlink_to(engine_socket())
    return f"unix://{link}"


def default_socket_clients(outer: docker.DockerClient) -> list[docker.DockerClient]:
    """The outer engine, and the default socket's engine when that is another one (the
    Podman run): where an old fall-back would have created something."""
    clients = [outer]
    if ENGINE != DEFAULT_ADDRESS and os.path.exists(DEFAULT_ADDRESS[len("unix://") :]):
        clients.append(docker.DockerClient(base_url=DEFAULT_ADDRESS, timeout=30))
    return clients


def one_error_line(stdout: str, start: str) -> str:
    """The single output line that starts with ``start`` (a fixture's one-line error)."""
    found = [line for line in stdout.splitlines() if line.startswith(start)]
    assert len(found) == 1, f"expected one line starting {start!r}:\n{stdout}"
    return found[0]


# -- through a context, against the real engine --------------------------------------------


def assert_runs_at(inner: InnerPytest, source: str, where: str, *args: str) -> None:
    """An inner run of ``source`` passes on the engine ``where`` names (address and what
    chose it, as its header says) and leaves nothing."""
    inner.pytester.makepyfile(source)
    run = inner.run(*args)
    run.result.assert_outcomes(passed=1)
    run.result.stdout.fnmatch_lines([f"dockervol: run {run.run_id}, engine * (API *) at {where}"])
    assert run.leftovers() == []


def test_docker_context_env_chooses_the_engine(
    inner: InnerPytest, cfg: CliConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = linked_engine(tmp_path)
    cfg.create("pdv-ctx", address)
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setenv("DOCKER_CONTEXT", "pdv-ctx")
    assert_runs_at(
        inner, SEED_AND_READ, f"{address} (Docker context 'pdv-ctx' from DOCKER_CONTEXT)"
    )


def test_current_context_chooses_the_engine(
    inner: InnerPytest, cfg: CliConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = linked_engine(tmp_path)
    cfg.create("pdv-current", address)
    cfg.docker("context", "use", "pdv-current")
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    config_file = cfg.path / "config.json"
    assert_runs_at(
        inner,
        SEED_AND_READ,
        f"{address} (Docker context 'pdv-current', the current context in {config_file})",
    )


def test_docker_host_wins_over_docker_context(
    inner: InnerPytest, cfg: CliConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As for the docker CLI; the context here points nowhere, so using it would fail."""
    cfg.create("pdv-ignored", f"unix://{tmp_path}/nowhere.sock")
    monkeypatch.setenv("DOCKER_HOST", ENGINE)
    monkeypatch.setenv("DOCKER_CONTEXT", "pdv-ignored")
    assert_runs_at(
        inner,
        SEED_AND_READ,
        f"{ENGINE} (from DOCKER_HOST, which wins over DOCKER_CONTEXT 'pdv-ignored')",
    )


def test_context_to_a_missing_socket_is_one_line_and_no_fallback(
    inner: InnerPytest,
    cfg: CliConfig,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    docker_client: docker.DockerClient,
) -> None:
    nowhere = f"unix://{tmp_path}/nowhere.sock"
    cfg.create("pdv-gone", nowhere)
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setenv("DOCKER_CONTEXT", "pdv-gone")
    inner.pytester.makepyfile(NEEDS_ENGINE)
    # Kept: had the run fallen back to the default socket, its volume would still be there.
    run = inner.run("--dockervol-keep")
    clients = default_socket_clients(docker_client)
    try:
        found = [
            f"{item} on {c.api.base_url}" for c in clients for item in leftovers(c, run.run_id)
        ]
        assert found == []
    finally:
        for client in clients:
            remove_run(client, run.run_id)
            if client is not docker_client:
                client.close()
    run.result.assert_outcomes(errors=1)
    out = run.result.stdout.str()
    where = f"{nowhere} (Docker context 'pdv-gone' from DOCKER_CONTEXT)"
    line = one_error_line(out, "cannot reach a Docker engine at ")
    assert line == (
        f"cannot reach a Docker engine at {where} (FileNotFoundError: No such file or "
        "directory); start the engine it points at, or unset DOCKER_CONTEXT, or set it to a "
        "context that `docker context ls` lists"
    )
    assert f"engine unreachable at {where}" in out
    assert DEFAULT_ADDRESS not in out
    assert "Traceback" not in out


def test_unknown_docker_context_is_one_line(
    inner: InnerPytest, cfg: CliConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setenv("DOCKER_CONTEXT", "pdv-no-such-context")
    inner.pytester.makepyfile(NEEDS_ENGINE)
    run = inner.run()
    run.result.assert_outcomes(errors=1)
    out = run.result.stdout.str()
    line = one_error_line(out, "Docker context 'pdv-no-such-context'")
    assert line == (
        f"Docker context 'pdv-no-such-context' (from DOCKER_CONTEXT) does not exist in "
        f"{cfg.path / 'contexts'}; unset DOCKER_CONTEXT, or set it to a context that "
        "`docker context ls` lists"
    )
    assert DEFAULT_ADDRESS not in out
    assert "Traceback" not in out
    assert run.leftovers() == []


@pytest.mark.parametrize("case", ["missing socket", "unknown context", "bad meta.json"])
def test_cli_under_a_broken_context_exits_2_with_one_line(
    case: str, cfg: CliConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    name = cfg.create("pdv-broken", f"unix://{tmp_path}/nowhere.sock")
    expected = [f"Docker context '{name}'"]
    if case == "missing socket":
        expected += [f"unix://{tmp_path}/nowhere.sock", "No such file", "unset DOCKER_CONTEXT"]
    elif case == "unknown context":
        name = "pdv-no-such-context"
        expected = [f"Docker context '{name}'", "does not exist", "`docker context ls`"]
    else:
        (meta,) = (cfg.path / "contexts" / "meta").glob("*/meta.json")
        meta.write_text('{"Name": "pdv-broken", "Endpoints": ')
        expected += [str(meta), "JSONDecodeError", "docker context rm"]
    monkeypatch.setenv("DOCKER_CONTEXT", name)
    done = cli("ls")
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("pytest-dockervol: ")
    for part in expected:
        assert part in done.stderr
    assert DEFAULT_ADDRESS not in done.stderr


SEED_RUN_READ = """
import os

def test_seed_run_and_read(named_volume, run_container):
    named_volume.seed({"in.txt": "through the transport"})
    container = run_container(
        os.environ["DOCKERVOL_IMAGE"],
        ["sh", "-c", "cat /data/in.txt > /data/out.txt"],
        mounts=[named_volume.mount("/data")],
    )
    assert container.wait(timeout=60)["StatusCode"] == 0
    assert named_volume.read_text("out.txt") == "through the transport"
"""


def test_tcp_context_through_a_loopback_proxy(
    inner: InnerPytest, cfg: CliConfig, tcp_proxy: LoopbackProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = f"tcp://127.0.0.1:{tcp_proxy.port}"
    cfg.create("pdv-tcp", address)
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setenv("DOCKER_CONTEXT", "pdv-tcp")
    where = f"{address} (Docker context 'pdv-tcp' from DOCKER_CONTEXT)"
    assert_runs_at(inner, SEED_RUN_READ, where)
    assert tcp_proxy.connections > 0


def test_ssh_context_goes_through_the_ssh_command(
    inner: InnerPytest, cfg: CliConfig, ssh_engine: SshEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the docker CLI does: ``ssh HOST docker system dial-stdio``, with the ssh client's
    own configuration (here: the one ``ssh_engine`` puts first on PATH); two workers."""
    cfg.create("pdv-ssh", ssh_engine.address)
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setenv("DOCKER_CONTEXT", "pdv-ssh")
    monkeypatch.setenv("PATH", ssh_engine.env()["PATH"])
    where = f"{ssh_engine.address} (Docker context 'pdv-ssh' from DOCKER_CONTEXT)"
    assert_runs_at(inner, SEED_RUN_READ, where, "-n", "2")


def test_connect_client_through_tcp_and_socket(
    cfg: CliConfig, tcp_proxy: LoopbackProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The function the watchdog calls, through a TCP context and through the socket."""
    address = f"tcp://127.0.0.1:{tcp_proxy.port}"
    cfg.create("pdv-tcp", address)
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setenv("DOCKER_CONTEXT", "pdv-tcp")
    start = time.perf_counter()
    client, where = connect_client(30)
    through_tcp = time.perf_counter() - start
    assert client.ping()
    assert where == f"{address} (Docker context 'pdv-tcp' from DOCKER_CONTEXT)"
    client.close()
    monkeypatch.setenv("DOCKER_HOST", ENGINE)
    start = time.perf_counter()
    client, where = connect_client(30)
    through_socket = time.perf_counter() - start
    assert client.ping()
    assert where.startswith(f"{ENGINE} (from DOCKER_HOST")
    client.close()
    print(f"connect_client: {through_tcp * 1000:.1f} ms via TCP, {through_socket * 1000:.1f} ms")

"""Docker CLI contexts: without DOCKER_HOST the plugin uses the engine of the CLI's context
(DOCKER_CONTEXT, else ``currentContext`` in $DOCKER_CONFIG/config.json), names it in the
header and in every "cannot reach" error, and never falls back to the default socket.

Contexts are made by the ``docker`` CLI in a temporary DOCKER_CONFIG and point at the
engine the outer suite uses (DOCKER_HOST, else the default socket); inner runs that must
go through a context run with DOCKER_HOST unset.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import certifi
import docker
import pytest
from conftest import InnerPytest, InnerRun, cli, leftovers, remove_run
from loopback import ENGINE, LoopbackProxy, engine_socket
from sshengine import SshEngine
from tlscerts import TlsFiles, make_tls_files

from pytest_dockervol._engine.endpoint import DEFAULT_ADDRESS, connect_client

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

    def create(self, name: str, host: str, tls: str = "") -> str:
        """A context; ``tls``: more of ``--docker``, e.g. ``ca=...,cert=...,key=...``."""
        self.docker(
            "context", "create", name, "--docker", ",".join(filter(None, [f"host={host}", tls]))
        )
        return name


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliConfig:
    """A fresh DOCKER_CONFIG (removed with tmp_path); no DOCKER_CONTEXT from outside."""
    path = tmp_path / "cfg"
    monkeypatch.setenv("DOCKER_CONFIG", str(path))
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    return CliConfig(path)


@dataclass
class TlsEngine:
    """The outer engine behind TLS on loopback, client certificates required."""

    proxy: LoopbackProxy
    files: TlsFiles

    @property
    def address(self) -> str:
        return f"tcp://127.0.0.1:{self.proxy.port}"


@pytest.fixture
def tls_engine(tmp_path: Path) -> Iterator[TlsEngine]:
    files = make_tls_files(tmp_path / "tls")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(files.ca))
    server.load_cert_chain(str(files.server_cert), str(files.server_key))
    server.verify_mode = ssl.CERT_REQUIRED
    proxy = LoopbackProxy(engine_socket(), tls=server)
    yield TlsEngine(proxy, files)
    proxy.stop()


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


def fails_to_reach_under(
    inner: InnerPytest, monkeypatch: pytest.MonkeyPatch, context: str
) -> InnerRun:
    """An inner run that needs the engine, under DOCKER_CONTEXT=``context`` alone: its one
    test errors at setup."""
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setenv("DOCKER_CONTEXT", context)
    inner.pytester.makepyfile(NEEDS_ENGINE)
    run = inner.run()
    run.result.assert_outcomes(errors=1)
    return run


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
    run = fails_to_reach_under(inner, monkeypatch, "pdv-no-such-context")
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


def test_tls_context_checks_certificates_both_ways(
    inner: InnerPytest, cfg: CliConfig, tls_engine: TlsEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A context made with the engine's CA and a client certificate (``docker context create
    --docker host=tcp://...,ca=,cert=,key=``): the CLI copies them into its store, where the
    plugin finds them; two workers, and the engine refuses no handshake. REQUESTS_CA_BUNDLE
    and CURL_CA_BUNDLE name another CA bundle, as on many CI images: the engine's CA must
    still win (with the SDK alone it does not: docker-py #2433)."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    monkeypatch.setenv("CURL_CA_BUNDLE", certifi.where())
    files = tls_engine.files
    cfg.create("pdv-tls", tls_engine.address, f"ca={files.ca},cert={files.cert},key={files.key}")
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setenv("DOCKER_CONTEXT", "pdv-tls")
    where = f"{tls_engine.address} (Docker context 'pdv-tls' from DOCKER_CONTEXT)"
    assert_runs_at(inner, SEED_RUN_READ, where, "-n", "2")
    assert tls_engine.proxy.connections > 0
    assert tls_engine.proxy.tls_refused == 0


def test_docker_host_with_tls_variables(
    inner: InnerPytest, tls_engine: TlsEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DOCKER_HOST with DOCKER_TLS_VERIFY and DOCKER_CERT_PATH, as docker-machine and
    GitLab's docker:dind set it up; with no CA bundle variables, then with one."""
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    monkeypatch.setenv("DOCKER_HOST", tls_engine.address)
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    monkeypatch.setenv("DOCKER_CERT_PATH", str(tls_engine.files.client_dir))
    assert_runs_at(inner, SEED_AND_READ, f"{tls_engine.address} (from DOCKER_HOST)")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    assert_runs_at(inner, SEED_AND_READ, f"{tls_engine.address} (from DOCKER_HOST)")
    assert tls_engine.proxy.connections > 0
    assert tls_engine.proxy.tls_refused == 0


@pytest.mark.parametrize("case", ["foreign CA", "no client certificate"])
def test_tls_context_refused_is_one_line_naming_the_certificates(
    case: str,
    inner: InnerPytest,
    cfg: CliConfig,
    tls_engine: TlsEngine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    docker_client: docker.DockerClient,
) -> None:
    """The engine answers but one side refuses the other's certificate: the error says to
    check the certificates (not to start the engine), and nothing is created anywhere."""
    if case == "foreign CA":  # the context trusts another CA, and presents that CA's client
        other = make_tls_files(tmp_path / "other", ca_name="pdv-other-ca")
        tls = f"ca={other.ca},cert={other.cert},key={other.key}"
        why = "CERTIFICATE_VERIFY_FAILED"
    else:  # the right CA, but the engine requires a client certificate
        tls = f"ca={tls_engine.files.ca}"
        why = "SSL"  # the engine hangs up: SSLEOFError, or its alert
    cfg.create("pdv-tls-refused", tls_engine.address, tls)
    run = fails_to_reach_under(inner, monkeypatch, "pdv-tls-refused")
    out = run.result.stdout.str()
    where = f"{tls_engine.address} (Docker context 'pdv-tls-refused' from DOCKER_CONTEXT)"
    line = one_error_line(out, "cannot reach a Docker engine at ")
    assert line.startswith(f"cannot reach a Docker engine at {where} ("), line
    assert why in line
    assert line.endswith(
        "; check the context's CA and client certificate (`docker context inspect "
        "pdv-tls-refused`; `docker context update pdv-tls-refused --docker "
        "host=...,ca=...,cert=...,key=...` replaces them)"
    ), line
    assert "start the engine" not in line
    assert "Traceback" not in out
    assert leftovers(docker_client, run.run_id) == []
    if case == "no client certificate":
        assert tls_engine.proxy.tls_refused > 0

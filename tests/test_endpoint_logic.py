"""Which engine the plugin chooses, as the ``docker`` command would (DOCKER_HOST, the CLI
context, the default socket), and the one-line errors when that choice points nowhere.
No engine: context stores are written by hand where the CLI keeps them."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import docker
import pytest
import requests.exceptions
from docker.context.config import get_context_id
from docker.tls import TLSConfig

from pytest_dockervol import DockerContextError, EngineUnavailableError
from pytest_dockervol._engine.endpoint import (
    HOST_FIX,
    HOST_TLS_FIX,
    Endpoint,
    connect_client,
    describe_address,
    engine_ca_first,
    resolve_endpoint,
    unreachable,
)
from pytest_dockervol._engine.engine import engine_error_reason


def write_context(config: Path, name: str, meta: object) -> Path:
    """A context store entry written by hand, where the docker CLI keeps it."""
    directory = config / "contexts" / "meta" / get_context_id(name)
    directory.mkdir(parents=True)
    (directory / "meta.json").write_text(meta if isinstance(meta, str) else json.dumps(meta))
    return directory / "meta.json"


def meta_of(name: str, host: str) -> dict[str, object]:
    return {"Name": name, "Metadata": {}, "Endpoints": {"docker": {"Host": host}}}


@pytest.fixture
def store(tmp_path: Path) -> Path:
    config = tmp_path / "cfg"
    write_context(config, "ci", meta_of("ci", "unix:///x.sock"))
    write_context(config, "cur", meta_of("cur", "tcp://127.0.0.1:2375"))
    (config / "config.json").write_text(json.dumps({"currentContext": "cur"}))
    return config


def test_docker_host_comes_first(store: Path) -> None:
    env = {"DOCKER_HOST": "tcp://127.0.0.1:1", "DOCKER_CONTEXT": "ci", "DOCKER_CONFIG": str(store)}
    endpoint = resolve_endpoint(env)
    assert (
        str(endpoint) == "tcp://127.0.0.1:1 (from DOCKER_HOST, which wins over DOCKER_CONTEXT 'ci')"
    )
    assert endpoint.from_env
    alone = resolve_endpoint({"DOCKER_HOST": "unix:///y.sock", "DOCKER_CONFIG": str(store)})
    assert str(alone) == "unix:///y.sock (from DOCKER_HOST)"


def test_docker_context_comes_before_the_current_context(store: Path) -> None:
    endpoint = resolve_endpoint({"DOCKER_CONTEXT": "ci", "DOCKER_CONFIG": str(store)})
    assert str(endpoint) == "unix:///x.sock (Docker context 'ci' from DOCKER_CONTEXT)"
    assert endpoint.context == "ci"
    assert not endpoint.from_env
    assert endpoint.tls is False


def test_current_context_of_the_config_file(store: Path) -> None:
    endpoint = resolve_endpoint({"DOCKER_CONFIG": str(store)})
    expected = f"(Docker context 'cur', the current context in {store / 'config.json'})"
    assert str(endpoint) == f"tcp://127.0.0.1:2375 {expected}"


def test_home_docker_is_the_default_config_dir(store: Path, tmp_path: Path) -> None:
    store.rename(tmp_path / ".docker")
    endpoint = resolve_endpoint({"HOME": str(tmp_path)})
    assert endpoint.address == "tcp://127.0.0.1:2375"
    assert endpoint.context == "cur"


@pytest.mark.parametrize(
    ("env", "origin"),
    [
        ({}, "the default; DOCKER_HOST is not set"),
        ({"DOCKER_CONTEXT": "default"}, "Docker context 'default' from DOCKER_CONTEXT"),
    ],
)
def test_default_is_the_default_socket(tmp_path: Path, env: dict[str, str], origin: str) -> None:
    endpoint = resolve_endpoint({"DOCKER_CONFIG": str(tmp_path / "none"), **env})
    assert str(endpoint) == f"unix:///var/run/docker.sock ({origin})"
    assert endpoint.from_env


def test_unknown_context_names_the_fix(store: Path) -> None:
    with pytest.raises(DockerContextError) as info:
        resolve_endpoint({"DOCKER_CONTEXT": "nope", "DOCKER_CONFIG": str(store)})
    assert isinstance(info.value, EngineUnavailableError)
    assert str(info.value) == (
        f"Docker context 'nope' (from DOCKER_CONTEXT) does not exist in {store / 'contexts'}; "
        "unset DOCKER_CONTEXT, or set it to a context that `docker context ls` lists"
    )
    (store / "config.json").write_text(json.dumps({"currentContext": "nope"}))
    with pytest.raises(DockerContextError, match="`docker context use default`"):
        resolve_endpoint({"DOCKER_CONFIG": str(store)})


@pytest.mark.parametrize(
    "meta",
    ['{"Name": "bad", "Endpoints": ', "[1, 2]", {"Name": "bad", "Endpoints": {"docker": "x"}}],
)
def test_malformed_store_is_one_line_with_its_cause(tmp_path: Path, meta: object) -> None:
    meta_file = write_context(tmp_path, "bad", meta)
    with pytest.raises(DockerContextError) as info:
        resolve_endpoint({"DOCKER_CONTEXT": "bad", "DOCKER_CONFIG": str(tmp_path)})
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("Docker context 'bad' (from DOCKER_CONTEXT)")
    assert str(meta_file) in message
    assert info.value.__cause__ is not None or "no docker endpoint" in message


def test_malformed_config_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"currentContext": ')
    with pytest.raises(DockerContextError) as info:
        resolve_endpoint({"DOCKER_CONFIG": str(tmp_path)})
    assert "\n" not in str(info.value)
    assert str(tmp_path / "config.json") in str(info.value)
    assert isinstance(info.value.__cause__, ValueError)


def test_tls_material_of_the_context(tmp_path: Path) -> None:
    meta = meta_of("sec", "tcp://127.0.0.1:2376")
    write_context(tmp_path, "sec", meta)
    tls_dir = tmp_path / "contexts" / "tls" / get_context_id("sec") / "docker"
    tls_dir.mkdir(parents=True)
    for name in ("ca", "cert", "key"):
        (tls_dir / f"{name}.pem").write_text("not checked here")
    endpoint = resolve_endpoint({"DOCKER_CONTEXT": "sec", "DOCKER_CONFIG": str(tmp_path)})
    assert not isinstance(endpoint.tls, bool)
    assert endpoint.tls.ca_cert == str(tls_dir / "ca.pem")
    assert endpoint.tls.cert == (str(tls_dir / "cert.pem"), str(tls_dir / "key.pem"))
    assert endpoint.tls.verify is True


def test_the_engines_ca_wins_over_requests_ca_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """requests would verify the engine with REQUESTS_CA_BUNDLE (docker-py #2433); a request
    that names its own ``verify`` keeps it."""
    ca = tmp_path / "ca.pem"
    ca.write_text("not read here")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "bundle.pem"))
    tls = TLSConfig(ca_cert=str(ca), verify=True)
    client = docker.DockerClient(base_url="tcp://127.0.0.1:2376", version="1.41", tls=tls)
    url = "https://127.0.0.1:2376/version"
    merge = client.api.merge_environment_settings
    # What requests does on its own (if it ever stops, the workaround can go).
    assert merge(url, {}, None, None, None)["verify"] == str(tmp_path / "bundle.pem")
    engine_ca_first(client.api)
    assert client.api.merge_environment_settings(url, {}, None, None, None)["verify"] == str(ca)
    assert client.api.merge_environment_settings(url, {}, None, False, None)["verify"] is False
    client.close()


def test_a_refused_handshake_names_the_certificates() -> None:
    endpoint = Endpoint("tcp://127.0.0.1:2376", "from DOCKER_HOST")
    refused = docker.errors.DockerException("Error while fetching server API version")
    refused.__cause__ = requests.exceptions.SSLError("CERTIFICATE_VERIFY_FAILED")
    assert unreachable(endpoint, refused).fix == HOST_TLS_FIX
    down = requests.exceptions.ConnectionError("Connection refused")
    assert unreachable(endpoint, down).fix == HOST_FIX
    assert str(unreachable(endpoint, down)).startswith(
        "cannot reach a Docker engine at tcp://127.0.0.1:2376 (from DOCKER_HOST) ("
    )


def nothing_listening(kind: str, tmp_path: Path) -> str:
    """An address where no engine answers: a missing socket, a socket file nobody listens
    on (what a stopped engine leaves), a closed port on loopback."""
    if kind == "missing socket":
        return f"unix://{tmp_path}/nowhere.sock"
    if kind == "stale socket":
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(str(tmp_path / "stale.sock"))
        stale.close()  # the file stays; connecting is refused
        return f"unix://{tmp_path}/stale.sock"
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]
    return f"tcp://127.0.0.1:{port}"


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("missing socket", "FileNotFoundError"),
        ("stale socket", "ConnectionRefusedError"),
        ("closed port", "Connection refused"),
    ],
)
def test_nothing_listening_names_context_and_endpoint(
    kind: str, reason: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """connect_client, the one way in: one line that names the context and its endpoint,
    and no client of the default socket in its place."""
    address = nothing_listening(kind, tmp_path)
    write_context(tmp_path / "cfg", "gone", meta_of("gone", address))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "cfg"))
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setenv("DOCKER_CONTEXT", "gone")
    with pytest.raises(EngineUnavailableError) as info:
        connect_client(5)
    message = str(info.value)
    assert message.startswith(
        f"cannot reach a Docker engine at {address} (Docker context 'gone' from DOCKER_CONTEXT) ("
    )
    assert reason in message
    assert "\n" not in message
    assert message.endswith(
        "; start the engine it points at, or unset DOCKER_CONTEXT, or set "
        "it to a context that `docker context ls` lists"
    )


def test_engine_errors_name_the_context(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A call that breaks later ("did not answer") names the context and its endpoint too."""
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(store))
    monkeypatch.setenv("DOCKER_CONTEXT", "ci")
    broken = requests.exceptions.ConnectionError(ConnectionResetError(104, "Connection reset"))
    assert engine_error_reason(broken).startswith(
        "the engine at unix:///x.sock (Docker context 'ci' from DOCKER_CONTEXT) did not answer ("
    )
    monkeypatch.setenv("DOCKER_CONTEXT", "nope")
    assert describe_address() == "Docker context 'nope' (from DOCKER_CONTEXT)"

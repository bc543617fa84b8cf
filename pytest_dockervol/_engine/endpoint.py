"""Where the Docker engine is, found as the ``docker`` command finds it.

``DOCKER_HOST`` wins (read by ``docker.from_env()``, with ``DOCKER_TLS_VERIFY`` and
``DOCKER_CERT_PATH``); else the Docker CLI context named by ``DOCKER_CONTEXT``, else the
``currentContext`` of ``$DOCKER_CONFIG/config.json`` (``~/.docker`` by default), else the
"default" context: the default socket. A context that is missing or unreadable is an
error, never a silent fall-back to the default socket.

The SDK's ``ContextAPI`` is not used to find a context: it looks for the store next to the
config file that ``find_config_file`` finds, which is ``~/.docker``'s (or a ``contexts``
directory relative to the working directory) whenever ``$DOCKER_CONFIG`` holds no
``config.json`` (what ``docker context create`` leaves), and it reads a malformed config
file as "default". The store is read at the CLI's place instead, with the SDK's pieces:
``get_context_id`` (the store's directory name) and ``Context`` (endpoint defaults, Host).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import docker
import docker.errors
import requests.exceptions
from docker.context import Context
from docker.context.config import get_context_id
from docker.tls import TLSConfig
from docker.utils import kwargs_from_env

from .._errors import DockerContextError, EngineUnavailableError, one_line

log = logging.getLogger("pytest_dockervol")

DEFAULT_ADDRESS = "unix:///var/run/docker.sock"
#: What to do when DOCKER_HOST or the default socket does not answer.
HOST_FIX = "start dockerd or point DOCKER_HOST at a running engine"
#: What to do when the TLS handshake with DOCKER_HOST fails (docker.from_env's files).
HOST_TLS_FIX = (
    "check that DOCKER_CERT_PATH (default ~/.docker) holds that engine's ca.pem and a "
    "client cert.pem and key.pem it accepts"
)
#: A client built with a version asks the engine nothing on creation.
_UNASKED_VERSION = "1.41"
_READ_TIMEOUT = re.compile(r"Read timed out\. \(read timeout=([\d.]+)\)")
_OS_ERROR_IN_MESSAGE = re.compile(r"(\w+Error)\((\d+), '([^']+)'\)")


@dataclass(frozen=True)
class Endpoint:
    """Where the engine is: the address, and where that choice came from (for messages)."""

    #: The address as the user wrote it (``unix://...``, ``tcp://...``, ``ssh://...``).
    address: str
    #: Why this address, in words: ``from DOCKER_HOST``, ``Docker context 'ci' from ...``.
    origin: str
    #: What to do when nothing answers there.
    fix: str = HOST_FIX
    #: None: ``docker.from_env()`` builds the client (DOCKER_HOST, or the default socket).
    context: str | None = None
    tls: TLSConfig | bool = False

    def __str__(self) -> str:
        return f"{self.address} ({self.origin})"

    @property
    def from_env(self) -> bool:
        return self.context is None or self.context == "default"

    @property
    def tls_fix(self) -> str:
        """What to do when the engine answers but the TLS handshake fails."""
        if self.from_env:
            return HOST_TLS_FIX
        return (
            f"check the context's CA and client certificate (`docker context inspect "
            f"{self.context}`; `docker context update {self.context} --docker "
            "host=...,ca=...,cert=...,key=...` replaces them)"
        )


def config_dir(environ: Mapping[str, str]) -> Path:
    """The Docker CLI's configuration directory: ``$DOCKER_CONFIG``, else ``~/.docker``."""
    configured = environ.get("DOCKER_CONFIG")
    if configured:
        return Path(configured)
    return Path(environ.get("HOME") or os.path.expanduser("~")) / ".docker"


@dataclass(frozen=True)
class Source:
    """A context chosen by name, and what chose it (DOCKER_CONTEXT or the config file)."""

    name: str
    why: str
    #: How to choose another context.
    fix: str

    @property
    def origin(self) -> str:
        """As an endpoint's origin: ``Docker context 'ci' from DOCKER_CONTEXT``."""
        separator = " " if self.why.startswith("from ") else ", "
        return f"Docker context {self.name!r}{separator}{self.why}"


def _current_context(config_file: Path) -> str:
    """``currentContext`` of the CLI's config file ("" when none)."""
    try:
        config = json.loads(config_file.read_text())
    except FileNotFoundError:
        return ""
    except (OSError, ValueError) as exc:
        raise DockerContextError(
            f"the Docker CLI config {config_file}",
            f"cannot be read ({type(exc).__name__}: {one_line(str(exc))})",
            "fix or remove that file, or set DOCKER_CONTEXT or DOCKER_HOST",
        ) from exc
    return str(config.get("currentContext") or "") if isinstance(config, dict) else ""


def resolve_endpoint(environ: Mapping[str, str] | None = None) -> Endpoint:
    """Where the engine is, as ``docker`` would choose it; no engine is contacted.
    Raises DockerContextError (one line) for a context that is missing or unreadable."""
    env = os.environ if environ is None else environ
    host = env.get("DOCKER_HOST")
    name = env.get("DOCKER_CONTEXT")
    if host:
        ignored = f", which wins over DOCKER_CONTEXT {name!r}" if name else ""
        return Endpoint(host, f"from DOCKER_HOST{ignored}")
    directory = config_dir(env)
    if name:
        fix = "unset DOCKER_CONTEXT, or set it to a context that `docker context ls` lists"
        source = Source(name, "from DOCKER_CONTEXT", fix)
    else:
        config_file = directory / "config.json"
        name = _current_context(config_file)
        if not name:
            return Endpoint(DEFAULT_ADDRESS, "the default; DOCKER_HOST is not set")
        fix = "run `docker context use default`, or use a context that `docker context ls` lists"
        source = Source(name, f"the current context in {config_file}", fix)
    if name == "default":
        return Endpoint(DEFAULT_ADDRESS, source.origin, context="default")
    return _load_context(directory / "contexts", source)


def _load_context(store: Path, source: Source) -> Endpoint:
    """The context's docker endpoint, read from the CLI's context store."""
    context_id = get_context_id(source.name)
    meta_file = store / "meta" / context_id / "meta.json"
    where = f"Docker context {source.name!r} ({source.why})"
    try:
        meta = json.loads(meta_file.read_text())
        endpoints = meta.get("Endpoints") or {}
        raw = endpoints.get("docker")
        if not isinstance(raw, dict):
            raise DockerContextError(where, f"has no docker endpoint in {meta_file}", source.fix)
        # Read first: Context() fills a missing SkipTLSVerify in with True (the CLI: false).
        skip_verify = bool(raw.get("SkipTLSVerify"))
        # No Host: the default socket, as for the docker CLI (named in every message).
        host = Context(source.name, endpoints=endpoints).Host or DEFAULT_ADDRESS
    except FileNotFoundError:
        raise DockerContextError(where, f"does not exist in {store}", source.fix) from None
    except (OSError, ValueError, AttributeError, docker.errors.DockerException) as exc:
        why = f"cannot be read from {meta_file} ({type(exc).__name__}: {one_line(str(exc))})"
        fix = f"fix or recreate it (`docker context rm`, `docker context create`); or {source.fix}"
        raise DockerContextError(where, why, fix) from exc
    tls = _tls_of(store / "tls" / context_id / "docker", skip_verify)
    fix = f"start the engine it points at, or {source.fix}"
    return Endpoint(str(host), source.origin, fix, source.name, tls)


def _tls_of(directory: Path, skip_verify: bool) -> TLSConfig | bool:
    """The endpoint's TLS, as the CLI sets it up: none without TLS files unless the
    context skips verification; its CA and client certificate when the store has them."""
    ca, cert, key = (directory / f"{name}.pem" for name in ("ca", "cert", "key"))
    if not (ca.is_file() or cert.is_file() or skip_verify):
        return False
    return TLSConfig(
        client_cert=(str(cert), str(key)) if cert.is_file() and key.is_file() else None,
        ca_cert=str(ca) if ca.is_file() else None,
        verify=not skip_verify,
    )


def describe_address() -> str:
    """Where the engine is looked for, in the words a user needs to fix it (never raises)."""
    try:
        return str(resolve_endpoint())
    except DockerContextError as exc:
        return exc.address


def short_reason(exc: BaseException) -> str:
    """The one part of a docker/requests error chain that says why (not the wrapper text)."""
    text = str(exc)
    timeout = _READ_TIMEOUT.search(text)
    if timeout:
        return f"timed out: no answer within {timeout.group(1)} s"
    match = _OS_ERROR_IN_MESSAGE.search(text)
    if match:
        return f"{match.group(1)}: {match.group(3)}"
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.strerror:
            return f"{type(cause).__name__}: {cause.strerror}"
        cause = cause.__cause__ or cause.__context__
    first_line = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return one_line(first_line)


def connect_client(timeout: float) -> tuple[docker.DockerClient, str]:
    """A client of the engine ``docker`` would use here, and where it points in words
    (for messages). Every connection of the plugin (the run, the CLI, the watchdog) is
    made here, so all of them reach the same engine. The client has asked the engine for
    its API version already: an engine that does not answer raises EngineUnavailableError."""
    endpoint = resolve_endpoint()
    # ssh:// as the docker CLI does it: shell out to the ssh command (its config, agent,
    # known hosts), not paramiko's own client; the SDK still imports paramiko for it.
    ssh = endpoint.address.startswith("ssh://")
    if ssh and not _has_paramiko():
        raise EngineUnavailableError(
            str(endpoint),
            "the docker SDK needs paramiko for ssh:// engines",
            "pip install 'pytest-dockervol[ssh]'",
        )
    # requests takes fractional seconds; the SDK's annotation says int.
    seconds = cast(int, timeout)

    # DOCKER_HOST and its TLS variables as docker.from_env() reads them, but never
    # from_env() itself: from docker 7.2 on it falls back to the SDK's own reading of the
    # CLI context (``ContextAPI``, see the module's docstring), which can choose another
    # engine than ``resolve_endpoint`` did, and than the docker CLI would.
    where: dict[str, Any] = {"base_url": endpoint.address, "tls": endpoint.tls}
    if endpoint.from_env:
        where = dict(kwargs_from_env())

    def build(version: str = "auto") -> docker.DockerClient:
        """A client; ``auto`` asks the engine for its API version and speaks that one (never
        a pinned one: Docker 29.0-29.2 refuse every client below API 1.44)."""
        return docker.DockerClient(version=version, timeout=seconds, use_ssh_client=ssh, **where)

    try:
        client = build(_UNASKED_VERSION)  # no request yet: only shows how TLS is set up
        if not isinstance(client.api.verify, str):
            client.close()
            client = build()
        else:  # verified with the engine's own CA, its version question included
            engine_ca_first(client.api)
            version = str(client.api.version(api_version=False)["ApiVersion"])
            client.close()
            client = build(version)
            engine_ca_first(client.api)
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        raise unreachable(endpoint, exc) from exc
    log.debug("Docker client for %s", endpoint)
    return client, str(endpoint)


def engine_ca_first(api: docker.APIClient) -> None:
    """Verify the engine with its own CA (a context's, DOCKER_CERT_PATH's), whatever
    REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE say. requests lets those variables replace a
    session's CA whenever a request names none, and the SDK's requests name none
    (docker-py #2433, #2598): on a machine that sets them (many CI images and company
    laptops do) every TLS engine would be refused. The docker CLI never reads them."""
    engine_ca = api.verify
    merge = api.merge_environment_settings

    def with_engine_ca(url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> Any:
        return merge(url, proxies, stream, engine_ca if verify is None else verify, cert)

    # requests calls it on the session (this client) for every request.
    api.merge_environment_settings = with_engine_ca  # type: ignore[method-assign]


def unreachable(endpoint: Endpoint, exc: BaseException) -> EngineUnavailableError:
    """The one-line error for an engine call that failed at ``endpoint``: why, and what to
    do (the certificates, when the TLS handshake failed; else start the engine)."""
    fix = endpoint.tls_fix if _tls_failed(exc) else endpoint.fix
    return EngineUnavailableError(str(endpoint), short_reason(exc), fix)


def _tls_failed(exc: BaseException) -> bool:
    """Whether the engine answered but the TLS handshake failed (its certificate, or ours,
    was refused): starting the engine would not help, its certificates would."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, (ssl.SSLError, requests.exceptions.SSLError)):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _has_paramiko() -> bool:
    try:
        importlib.import_module("paramiko")
    except ImportError:
        return False
    return True

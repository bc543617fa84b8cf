"""The connection to the Docker engine and the plugin's own helper image.

Seeding and reading volumes go through Docker's archive API on a helper
container that is created but never started. Its image is made locally from an
empty tar (``docker import``), once per engine, so the plugin never pulls.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import socket
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors
import requests.exceptions
import urllib3.exceptions

# The SDK's types the rest of the package names (the dockervol_client fixture's client,
# run_container's containers, the mounts volumes hand out), re-exported so that the
# engine stays the only importer of the SDK.
from docker import DockerClient as DockerClient
from docker.models.containers import Container as Container
from docker.types import DriverConfig as DriverConfig
from docker.types import Mount as Mount
from filelock import FileLock

from .._errors import (
    DockervolError,
    EngineRefusedError,
    EngineVersionError,
    ImageNotFoundLocallyError,
    one_line,
)
from .calls import EngineCalls

# describe_address and short_reason are also offered here, where the upper layers take them.
from .endpoint import connect_client, resolve_endpoint, unreachable
from .endpoint import describe_address as describe_address
from .endpoint import short_reason as short_reason
from .labels import LABEL_KIND, LABEL_OWNER, OWNER_VALUE
from .statedir import state_dir

log = logging.getLogger("pytest_dockervol")

#: Bump the tag when the helper image's content or configuration changes.
HELPER_IMAGE = "pytest-dockervol-helper:1"
#: Where helper containers mount the volume they serve.
HELPER_MOUNT_POINT = "/v"
#: What a call to the engine raises when the engine refuses or the connection breaks
#: (mid-stream too: urllib3's own errors reach us from a streamed archive).
ENGINE_CALL_ERRORS: tuple[type[BaseException], ...] = (
    docker.errors.DockerException,
    requests.exceptions.RequestException,
    urllib3.exceptions.HTTPError,
)
# The SDK's own exception classes, re-exported under our names so that the engine stays the
# only importer of the SDK: the rest of the package catches exactly these classes.
#: A volume, container or file the engine does not have (HTTP 404).
EngineNotFound = docker.errors.NotFound
#: Any refusal the engine answered with (``status_code``, ``explanation``).
EngineAPIError = docker.errors.APIError
#: The base of every SDK error; also raised by the package for an answer it cannot accept.
EngineCallError = docker.errors.DockerException
#: The HTTP stack's base error: the engine did not answer (an APIError is one too).
EngineRequestError = requests.exceptions.RequestException


@contextlib.contextmanager
def engine_errors_as(
    error: Callable[[str], Exception],
    catch: tuple[type[BaseException], ...] = ENGINE_CALL_ERRORS,
) -> Iterator[None]:
    """Raise ``error(why)`` for an engine error in the block: one line that keeps the
    engine's cause whole (``no space left on device``), in the plugin's own error type
    that says what state things are left in. The plugin's own errors pass through."""
    __tracebackhide__ = True
    try:
        yield
    except catch as exc:
        raise error(engine_error_reason(exc)) from None


def refused_as(action: str, fix: str) -> contextlib.AbstractContextManager[None]:
    """Turn an engine refusal into one line that says what was asked and how to fix it."""
    return engine_errors_as(
        lambda why: EngineRefusedError(action, why, fix), (docker.errors.APIError,)
    )


#: What a call to the engine can raise, our own errors included: teardown reports these
#: instead of crashing the session.
ENGINE_ERRORS: tuple[type[BaseException], ...] = (DockervolError, *ENGINE_CALL_ERRORS)


def container_name(container: dict[str, Any]) -> str:
    """A container of the engine's list, as a human finds it in ``docker ps -a``."""
    names = container.get("Names")
    return str(names[0]).lstrip("/") if names else str(container["Id"])[:12]


def describe_containers(containers: list[dict[str, Any]]) -> str:
    """``name (state), ...``: who holds a volume, in an error message."""
    return ", ".join(f"{container_name(c)} ({c.get('State', '?')})" for c in containers)


def engine_error_reason(exc: BaseException) -> str:
    """Why an engine call failed, in one line that says where to look: the engine's own
    explanation whole (the cause comes last: ``write /v/f: no space left on device``),
    only its long words (paths, URLs) cut."""
    if isinstance(exc, docker.errors.APIError):
        return one_line(str(exc.explanation or exc)) or type(exc).__name__
    if isinstance(exc, ENGINE_CALL_ERRORS):
        return f"the engine at {describe_address()} did not answer ({short_reason(exc)})"
    return one_line(str(exc)) or type(exc).__name__


@dataclass(frozen=True)
class EngineFeature:
    """Something the plugin asks only of an engine whose API has it: older engines ignore
    fields they do not know, silently, so the plugin refuses before it asks."""

    name: str
    #: The first Engine API version that has it.
    api: tuple[int, int]
    #: The first Docker release with that API, as a user knows it.
    docker: str
    fix: str

    @property
    def needed(self) -> str:
        return f"{self.docker} or newer (API {self.api[0]}.{self.api[1]})"


#: ``Mount.VolumeOptions.Subpath``: API 1.45. Docker 20.10-25 and Podman 4 (API 1.41)
#: mount the whole volume instead (checked on each engine CI runs).
SUBPATH_MOUNTS = EngineFeature(
    "volume subpath mounts",
    (1, 45),
    "Docker 26.0",
    "upgrade the engine, or mount the whole volume and use the directory inside it",
)


def api_version_tuple(text: str) -> tuple[int, int]:
    """``"1.45"`` as ``(1, 45)``, compared as numbers (1.9 < 1.45); ``(0, 0)`` for anything
    that is not such a version."""
    major, _, minor = text.strip().partition(".")
    if not (major.isdigit() and minor.isdigit()):
        return (0, 0)
    return (int(major), int(minor))


class Engine(EngineCalls):
    """A connected Docker engine, with what the plugin needs of it in one place."""

    def __init__(self, client: docker.DockerClient, address: str, version: dict[str, Any]) -> None:
        self.client = client
        self.api = client.api
        self.address = address
        self.server_version = str(version.get("Version", "?"))
        self.api_version = str(version.get("ApiVersion", "?"))
        self.is_podman = any(
            "podman" in str(component.get("Name", "")).lower()
            for component in version.get("Components", []) or []
        )
        self._helper_image_ready = False
        self._engine_host: str | None = None
        #: What probes found of this engine, by probe name (see ``verdict``).
        self._verdicts: dict[str, bool] = {}

    def verdict(self, name: str, probe: Callable[[], bool]) -> bool:
        """What ``probe`` says of this engine: asked once, then remembered for the engine's
        lifetime (a probe costs engine calls, and its answer does not change)."""
        if name not in self._verdicts:
            self._verdicts[name] = probe()
        return self._verdicts[name]

    def known_verdict(self, name: str) -> bool | None:
        """The verdict of probe ``name`` if it was asked already, else None: for a reader
        that may profit from a verdict but must not probe for it."""
        return self._verdicts.get(name)

    def containers_using(self, volume: str, **filters: str) -> list[dict[str, Any]]:
        """The containers (any state) that mount ``volume``, as the engine lists them."""
        return self.containers(filters={"volume": volume, **filters})

    @property
    def engine_host(self) -> str:
        """The name the engine gives its own machine (``docker info``), asked once."""
        if self._engine_host is None:
            self._engine_host = str(self.info().get("Name", ""))
        return self._engine_host

    @property
    def shares_host_filesystem(self) -> bool:
        """Whether a bind mount of a path here binds this machine's path: true for a local
        socket, and for TCP when the engine reports this machine's host name."""
        scheme = self.base_url.split(":", 1)[0]
        if scheme in ("http+unix", "http+docker", "npipe"):
            return True
        return self.engine_host == socket.gethostname()

    @classmethod
    def connect(cls, timeout: float) -> Engine:
        """Connect to the engine the docker CLI would use here (DOCKER_HOST, else the CLI
        context: ``_endpoint.py``); fail in one clear line that names it."""
        client, address = connect_client(timeout)
        try:
            version = client.version()
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            client.close()  # it answered a moment ago: say what to do about the same place
            raise unreachable(resolve_endpoint(), exc) from exc
        log.debug("connected to Docker %s at %s", version.get("Version"), address)
        return cls(client, address, version)

    @classmethod
    def connect_unprobed(cls, timeout: float) -> Engine:
        """The same engine as ``connect``, without its version probe (``describe`` and
        ``is_podman`` then know nothing): what the watchdog needs, which only makes and
        removes labelled volumes and containers, as it did with the bare client."""
        client, address = connect_client(timeout)
        return cls(client, address, {})

    def require(self, feature: EngineFeature) -> None:
        """Refuse ``feature`` on an engine whose API is older than the feature's.

        Raises:
            EngineVersionError: the engine's API version is below ``feature.api``.
        """
        __tracebackhide__ = True
        if api_version_tuple(self.api_version) < feature.api:
            raise EngineVersionError(feature.name, feature.needed, self.describe(), feature.fix)

    def describe(self) -> str:
        flavour = "Podman" if self.is_podman else "Docker"
        return f"{flavour} {self.server_version} (API {self.api_version}) at {self.address}"

    def close(self) -> None:
        self.client.close()

    # -- helper image and containers -------------------------------------------------

    def ensure_helper_image(self) -> str:
        """Make the never-run helper image once per engine (not per volume), without a pull."""
        if self._helper_image_ready:
            return HELPER_IMAGE
        lock_dir = state_dir()
        # Concurrent runs and xdist workers may all find the image missing; the lock makes
        # one of them import it and the others reuse it instead of leaving dangling copies.
        with FileLock(str(lock_dir / "helper-image.lock")):
            try:
                self.api.inspect_image(HELPER_IMAGE)  # type: ignore[no-untyped-call]
            except docker.errors.ImageNotFound:
                repository, tag = HELPER_IMAGE.rsplit(":", 1)
                empty_tar = io.BytesIO()
                tarfile.open(fileobj=empty_tar, mode="w").close()
                # Imported unnamed, then tagged: Podman's import ignores `tag` (it names the
                # image :latest) and reads only the first key=value of a LABEL line.
                output = self.api.import_image_from_data(
                    empty_tar.getvalue(),
                    changes=[
                        'CMD ["/pytest-dockervol-helper-is-never-started"]',
                        f"LABEL {LABEL_OWNER}={OWNER_VALUE}",
                        f"LABEL {LABEL_KIND}=helper-image",
                    ],
                )
                image_id = json.loads(str(output).strip().splitlines()[-1])["status"]
                self.api.tag(image_id, repository, tag)
                log.info("created helper image %s", HELPER_IMAGE)
        self._helper_image_ready = True
        return HELPER_IMAGE

    def create_helper(self, mount: Mount, labels: dict[str, str]) -> str:
        """A created, never-started container whose only job is to expose a volume."""
        image = self.ensure_helper_image()
        host_config = self.api.create_host_config(mounts=[mount])
        created = self.api.create_container(
            image, host_config=host_config, labels=labels, network_disabled=True
        )
        return str(created["Id"])

    def get_archive(self, container: str, path: str) -> Iterator[bytes]:
        """``GET /containers/{id}/archive`` as a stream of tar chunks.

        The one place that uses the docker SDK's private request helpers (``_url``,
        ``_get``, ``_raise_for_status``, ``_stream_raw_result``), on purpose: the SDK's
        public ``APIClient.get_archive`` also decodes the ``X-Docker-Container-Path-Stat``
        header, which Podman encodes as URL-safe base64 and the SDK fails on for some
        non-ASCII names. These are the very calls ``get_archive`` makes, with the same
        signatures in docker 7.1.0 (our lowest supported) and 7.2.0 (checked).
        """
        api: Any = self.api  # the stubs leave the private helpers out
        url = api._url("/containers/{0}/archive", container)
        response = api._get(url, params={"path": path}, stream=True)
        api._raise_for_status(response)
        chunks: Iterator[bytes] = api._stream_raw_result(response, 2 * 1024 * 1024, False)
        return chunks

    def create_container(self, image: str, command: Any, **kwargs: Any) -> Any:
        """Create (never pull) a test container; a missing image is a one-line error."""
        try:
            return self.client.containers.create(image, command, **kwargs)
        except docker.errors.ImageNotFound:
            raise ImageNotFoundLocallyError(image) from None

"""The engine calls the rest of the package makes on volumes, containers and archives.

Each is the thin equivalent of the docker SDK's low-level call it stands for: the same
request, the same answer, the same exceptions (``docker.errors.NotFound`` for a missing
volume, ``APIError`` for a refusal). They live here so that ``_engine`` stays the only
package that talks to the SDK; ``Engine`` inherits them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import docker


class EngineCalls:
    """What the package asks of the engine about volumes, containers and archives."""

    #: The SDK's low-level client: only ``_engine`` reads it.
    api: docker.APIClient

    # -- the engine itself --------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """Where the client sends its requests (``http+docker://localhost`` for a socket):
        tells a local socket from TCP."""
        return self.api.base_url

    def info(self) -> dict[str, Any]:
        """``docker info``: the engine's name, clock, security options (asked each time)."""
        return self.api.info()

    def ping_date(self) -> str | None:
        """The ``Date`` the engine's HTTP server stamps on a ``/_ping`` answer (None for a
        failed answer, or one without it): the engine's clock in one fast call."""
        api = self.api
        answer = api.get(f"{api.base_url}/_ping", timeout=api.timeout)
        date = answer.headers.get("Date")
        return str(date) if answer.ok and date else None

    def df(self) -> dict[str, Any]:
        """``docker system df``: volume sizes (slow on big volumes, so only on request)."""
        return self.api.df()

    # -- volumes ------------------------------------------------------------------------

    def volumes(self, filters: dict[str, Any]) -> list[dict[str, Any]]:
        """The volumes the engine lists for ``filters`` (it may list more: Podman ORs label
        filters, so callers check labels again)."""
        return list(self.api.volumes(filters=filters).get("Volumes") or [])

    def inspect_volume(self, name: str) -> dict[str, Any]:
        """One volume's driver, options, labels and ``Mountpoint``; NotFound when gone."""
        return self.api.inspect_volume(name)

    def create_volume(
        self,
        name: str,
        *,
        driver: str | None = None,
        driver_opts: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Create a volume; the engine's answer as it came (Docker answers a create of an
        existing name with that volume, so callers check its labels)."""
        return self.api.create_volume(name, driver=driver, driver_opts=driver_opts, labels=labels)

    def remove_volume(self, name: str, *, force: bool = False) -> None:
        """Remove a volume; NotFound when gone, APIError (409) while a container uses it."""
        self.api.remove_volume(name, force=force)

    # -- containers ---------------------------------------------------------------------

    def containers(self, *, filters: dict[str, Any], all: bool = True) -> list[dict[str, Any]]:
        """The containers the engine lists for ``filters`` (any state unless ``all=False``)."""
        return list(self.api.containers(all=all, filters=filters))

    def inspect_container(self, container: str) -> dict[str, Any]:
        """One container's state and mounts (an anonymous volume's name is in its mounts)."""
        found: dict[str, Any] = self.api.inspect_container(container)
        return found

    def remove_container(self, container: str, *, v: bool, force: bool = True) -> None:
        """Remove a container, running or not; ``v``: its anonymous volumes with it (said at
        every call: an anonymous volume's helper is its anchor)."""
        self.api.remove_container(container, v=v, force=force)

    def put_archive(self, container: str, path: str, data: bytes | Iterable[bytes]) -> bool:
        """Extract a tar (whole, or a stream of chunks) at ``path`` in ``container``; the
        engine extracts as it arrives."""
        return self.api.put_archive(container, path, data)

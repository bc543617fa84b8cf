"""Anonymous volumes: Docker names them (64 hex) when the helper that anchors them is created."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from docker.types import DriverConfig, Mount

from .._engine.engine import HELPER_MOUNT_POINT, refused_as
from .._engine.labels import ANONYMOUS_VOLUME_LABEL
from .._errors import EngineRefusedError
from .docker import DockerVolume
from .helper import is_tmpfs
from .owner import ResourceOwner

if TYPE_CHECKING:
    from typing_extensions import Self


class AnonymousVolume(DockerVolume):
    """A real anonymous volume: Docker names it (64 hex) when its anchor container is created.

    The anchor is the helper container, so ``docker rm -v`` of the anchor removes the
    volume too, and Docker 23+ also reclaims it with a plain ``docker volume prune``.
    """

    kind = "anonymous"

    @classmethod
    def create(
        cls,
        owner: ResourceOwner,
        *,
        labels: dict[str, str],
        driver: str | None = None,
        driver_opts: dict[str, str] | None = None,
    ) -> Self:
        """Create one labelled as the owner's run (its cleanup is the caller's: adopt)."""
        engine, identity, creator = owner.creating_engine, owner.identity, owner.creator
        if engine.is_podman and (driver or driver_opts or labels):
            raise EngineRefusedError(
                "create an anonymous volume",
                "Podman's Docker API ignores the driver, driver_opts and labels of anonymous "
                "volumes",
                "use volume_factory.named() for a volume that needs them",
            )
        driver_config = (
            DriverConfig(driver or "local", driver_opts) if driver or driver_opts else None
        )
        mount = Mount(
            HELPER_MOUNT_POINT,
            None,
            type="volume",
            no_copy=True,
            labels={**labels, **identity.labels(cls.kind, creator), ANONYMOUS_VOLUME_LABEL: ""},
            driver_config=driver_config,
        )
        with refused_as("create an anonymous volume", "check the driver and driver_opts"):
            helper_id = engine.create_helper(mount, identity.labels("helper", creator))
        mounts: list[dict[str, Any]] = engine.api.inspect_container(helper_id).get("Mounts") or []
        name = str(mounts[0]["Name"])
        tmpfs = is_tmpfs(driver, driver_opts)  # its seed is refused, as a named one's
        return cls(owner, engine, name, creator=creator, helper_id=helper_id, tmpfs=tmpfs)

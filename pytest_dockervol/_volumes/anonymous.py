"""Anonymous volumes: Docker names them (64 hex) when the helper that anchors them is created."""

from __future__ import annotations

from typing import Any

from .._engine.engine import HELPER_MOUNT_POINT, DriverConfig, Mount, refused_as
from .._engine.labels import ANONYMOUS_VOLUME_LABEL
from .._errors import EngineFeatureError
from .docker import DockerVolume
from .owner import ResourceOwner


class AnonymousVolume(DockerVolume):
    """A real anonymous volume: Docker names it (64 hex) when its anchor container is created.

    The anchor is the helper container, so ``docker rm -v`` of the anchor removes the
    volume too, and Docker 23+ also reclaims it with a plain ``docker volume prune``.
    """

    kind = "anonymous"

    @classmethod
    def _create_on_engine(
        cls,
        owner: ResourceOwner,
        name: str | None,
        labels: dict[str, str],
        user_labels: dict[str, str],
        driver: str | None,
        driver_opts: dict[str, str] | None,
    ) -> tuple[str, str | None]:
        """Docker names the volume when the helper that mounts it is created."""
        __tracebackhide__ = True
        engine = owner.creating_engine
        if engine.is_podman and (driver or driver_opts or user_labels):
            raise EngineFeatureError(
                "the driver, driver_opts and labels of an anonymous volume",
                "Docker (Podman's Docker API ignores them)",
                engine.describe(),
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
            labels={**labels, ANONYMOUS_VOLUME_LABEL: ""},
            driver_config=driver_config,
        )
        helper_labels = owner.identity.labels("helper", owner.creator)
        with refused_as("create an anonymous volume", "check the driver and driver_opts"):
            helper_id = engine.create_helper(mount, helper_labels)
        mounts: list[dict[str, Any]] = engine.inspect_container(helper_id).get("Mounts") or []
        return str(mounts[0]["Name"]), helper_id

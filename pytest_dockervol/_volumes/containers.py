"""Test containers that the plugin removes, with their anonymous volumes."""

from __future__ import annotations

import time
from typing import Any, final

from .._engine.engine import Container, Engine, EngineAPIError, EngineNotFound
from .._engine.labels import check_user_labels
from .._errors import CleanupError, DockervolUsageError, check_ispytest
from .owner import ResourceOwner


class TrackedContainer:
    """Removes one container the plugin created (``v=True``: its anonymous volumes go too)."""

    kind = "container"

    def __init__(self, engine: Engine, container_id: str, name: str) -> None:
        self._engine = engine
        self.id = container_id
        self.name = name
        self.removed = False

    def remove(self) -> None:
        """Remove the container; it is this run's by construction (ids are never reused,
        so no label lookup is needed to prove ownership)."""
        if self.removed:
            return
        try:
            self._engine.remove_container(self.id, force=True, v=True)
        except EngineNotFound:
            pass
        except EngineAPIError as exc:
            raise CleanupError("container", self.name, str(exc.explanation or exc)) from None
        self.removed = True


@final
class ContainerRunner:
    """Starts labelled containers; the test's teardown (``remove_all``) or the end of the
    session removes them with their anonymous volumes.

    ``creator`` names the test the containers are for; None means whoever is creating
    when a container starts (the session factory's runner).
    """

    def __init__(
        self, owner: ResourceOwner, creator: str | None = None, *, _ispytest: bool = False
    ) -> None:
        check_ispytest(_ispytest)
        self._owner = owner
        self._creator = creator
        self.containers: list[TrackedContainer] = []

    def __call__(
        self, image: str, command: str | list[str] | None = None, **kwargs: Any
    ) -> Container:
        """Create and start a container; takes the keyword arguments of
        ``client.containers.create``. The image must be on the engine: nothing is pulled.

        Raises:
            ImageNotFoundLocallyError: the image is not on the engine (the plugin never pulls).
            EngineRefusedError: the engine refused to create or start the container.
        """
        __tracebackhide__ = True
        if kwargs.pop("remove", False) or kwargs.get("auto_remove"):
            raise DockervolUsageError(
                "run_container removes its containers at the end of the test; "
                "drop remove=True/auto_remove=True"
            )
        kwargs.pop("detach", None)
        user_labels = kwargs.pop("labels", None) or {}
        if isinstance(user_labels, list):
            user_labels = {label: "" for label in user_labels}
        owner = self._owner
        creator = self._creator or owner.creator
        labels = {**check_user_labels(user_labels), **owner.identity.labels("container", creator)}
        engine = owner.creating_engine
        container: Container = engine.create_container(image, command, labels=labels, **kwargs)
        tracked = TrackedContainer(engine, str(container.id), str(container.name))
        # Removal is registered before start: a container that fails to start is still removed.
        self.containers.append(tracked)
        owner.register(tracked)  # the session's cleanup catches what teardown missed
        container.start()
        _reload_after_start(container)
        return container

    def remove_all(self) -> None:
        """Remove this runner's containers, newest first; failures are reported, not raised."""
        for tracked in reversed(self.containers):
            self._owner.finalize(tracked)
        self.containers.clear()


def _reload_after_start(container: Container, attempts: int = 3) -> None:
    """Podman may answer 500 (``read /proc/N/cgroup: no such process``) to an inspect of a
    container whose process exited in that instant; asked again, it gives the final state."""
    for attempt in range(attempts):
        try:
            container.reload()
            return
        except EngineAPIError as exc:
            transient = exc.status_code == 500 and "no such process" in str(exc)
            if not transient or attempt == attempts - 1:
                raise
            time.sleep(0.05)

"""Test containers that the plugin removes, with their anonymous volumes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import docker.errors
from docker.models.containers import Container

from ._engine import Engine
from ._errors import CleanupError, DockervolUsageError
from ._identity import RunIdentity, check_user_labels

log = logging.getLogger("pytest_dockervol")


class TrackedContainer:
    """Removes one container the plugin created (``v=True``: its anonymous volumes go too)."""

    kind = "container"

    def __init__(self, engine: Engine, container_id: str, name: str) -> None:
        self._engine = engine
        self.id = container_id
        self.name = name
        self.removed = False

    def remove(self) -> None:
        """Remove the container if it still carries this run's labels; never anything else."""
        if self.removed:
            return
        api = self._engine.api
        # The id is this container's, created by this run: ids are never reused, so no
        # label lookup is needed to prove ownership.
        try:
            api.remove_container(self.id, force=True, v=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            raise CleanupError("container", self.name, str(exc.explanation or exc)) from None
        self.removed = True


def start_container(
    engine: Engine,
    identity: RunIdentity,
    creator: str,
    register: Callable[[TrackedContainer], None],
    image: str,
    command: str | list[str] | None = None,
    **kwargs: Any,
) -> Container:
    """Create a labelled container, register its removal, then start it.

    Accepts the keyword arguments of ``docker.models.containers.ContainerCollection.create``.
    The image must already be on the engine: nothing is pulled.
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
    labels = {**check_user_labels(user_labels), **identity.labels("container", creator)}
    container: Container = engine.create_container(image, command, labels=labels, **kwargs)
    tracked = TrackedContainer(engine, str(container.id), str(container.name))
    # Removal is registered before start: a container that fails to start is still removed.
    register(tracked)
    container.start()
    container.reload()
    return container

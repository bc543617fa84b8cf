"""Typed errors: each says what went wrong and how to fix it, on one line."""

from __future__ import annotations


class DockervolError(Exception):
    """Base class of every error pytest-dockervol raises on purpose."""


class EngineUnavailableError(DockervolError):
    """No Docker engine answered at the address the Docker SDK was told to use."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(address, reason)
        self.address = address
        self.reason = reason

    def __str__(self) -> str:
        return (
            f"cannot reach a Docker engine at {self.address} ({self.reason}); "
            "start dockerd or point DOCKER_HOST at a running engine"
        )


class SeedError(DockervolError):
    """A seed source cannot be used; nothing was written."""


class SeedPathError(SeedError):
    """A path in a seed would land outside the volume or is not a valid file name."""

    def __init__(self, path: str, why: str) -> None:
        super().__init__(path, why)
        self.path = path
        self.why = why

    def __str__(self) -> str:
        return (
            f"path {self.path!r} {self.why}; use a relative POSIX path that stays inside the volume"
        )


class SeedSourceError(SeedError):
    """The seed source itself is missing, unreadable or of an unsupported kind."""


class VolumeNameError(DockervolError, ValueError):
    """A volume name Docker would reject."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return (
            f"invalid volume name {self.name!r}: use at least 2 characters from "
            "[a-zA-Z0-9_.-], starting with a letter or digit"
        )


class VolumeExistsError(DockervolError):
    """A volume of the requested name exists and was not created by this run."""

    def __init__(self, name: str, created_by_this_run_for: str | None = None) -> None:
        super().__init__(name, created_by_this_run_for)
        self.name = name
        self.created_by_this_run_for = created_by_this_run_for

    def __str__(self) -> str:
        if self.created_by_this_run_for is not None:
            return (
                f"volume {self.name!r} already exists: this run created it for "
                f"{self.created_by_this_run_for}; use that volume, or pick another name"
            )
        return (
            f"volume {self.name!r} already exists and was not created by this test run; "
            "pick another name, or remove it yourself with `docker volume rm "
            f"{self.name}` if it is unused"
        )


class VolumeRemovedError(DockervolError):
    """The volume object was used after `.remove()`."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"volume {self.name!r} was already removed; create a new one from volume_factory"


class VolumeReadError(DockervolError, FileNotFoundError):
    """A path read back from a volume does not exist or is not a regular file."""

    def __init__(self, volume: str, path: str, why: str) -> None:
        super().__init__(volume, path, why)
        self.volume = volume
        self.path = path
        self.why = why

    def __str__(self) -> str:
        return f"cannot read {self.path!r} from volume {self.volume!r}: {self.why}"


class ImageNotFoundLocallyError(DockervolError):
    """The image for a test container is not on the engine; the plugin never pulls."""

    def __init__(self, image: str) -> None:
        super().__init__(image)
        self.image = image

    def __str__(self) -> str:
        return (
            f"image {self.image!r} is not on the Docker engine and pytest-dockervol never "
            f"pulls; run `docker pull {self.image}` or build it before the tests"
        )


class LabelError(DockervolError, ValueError):
    """A label the plugin cannot accept."""

    def __init__(self, label: str, why: str) -> None:
        super().__init__(label, why)
        self.label = label
        self.why = why

    def __str__(self) -> str:
        return f"label {self.label}: {self.why}; rename or drop that label"


class HostPathError(DockervolError):
    """A host directory to bind does not exist or is not a directory."""

    def __init__(self, path: str, why: str) -> None:
        super().__init__(path, why)
        self.path = path
        self.why = why

    def __str__(self) -> str:
        return (
            f"host directory {self.path!r} {self.why}; create it first, or call "
            "volume_factory.host() without a path for a fresh one"
        )


class DockervolUsageError(DockervolError, ValueError):
    """An argument the plugin cannot use; the message names the fix."""


class CleanupError(DockervolError):
    """Something the plugin created could not be removed."""

    def __init__(self, what: str, name: str, reason: str) -> None:
        super().__init__(what, name, reason)
        self.what = what
        self.name = name
        self.reason = reason

    def __str__(self) -> str:
        return f"could not remove {self.what} {self.name}: {self.reason}"


class SharedSeedError(DockervolError):
    """Seeding a run-wide shared volume failed; every worker asking for it gets this error."""

    def __init__(self, key: str, cause: str, where: str) -> None:
        super().__init__(key, cause, where)
        self.key = key
        self.cause = cause
        self.where = where

    def __str__(self) -> str:
        return (
            f"shared volume {self.key!r} could not be seeded ({self.cause}, first raised in "
            f"{self.where}); fix the seed: the run does not retry it"
        )


class VolumeInUseError(DockervolError):
    """A volume cannot be copied or restored while other containers use it."""

    def __init__(self, volume: str, action: str, users: str, fix: str) -> None:
        super().__init__(volume, action, users, fix)
        self.volume = volume
        self.action = action
        self.users = users
        self.fix = fix

    def __str__(self) -> str:
        return f"cannot {self.action} volume {self.volume}: used by {self.users}; {self.fix}"


class VolumeCopyError(DockervolError):
    """Copying a volume's files (clone, snapshot, restore) failed."""

    def __init__(self, source: str, target: str, why: str) -> None:
        super().__init__(source, target, why)
        self.source = source
        self.target = target
        self.why = why

    def __str__(self) -> str:
        return (
            f"could not copy volume {self.source} into {self.target}: {self.why}; "
            "the target is incomplete, remove it or restore it again"
        )


class EngineRefusedError(DockervolError):
    """The engine answered with an error to something the plugin asked."""

    def __init__(self, action: str, explanation: str, fix: str) -> None:
        super().__init__(action, explanation, fix)
        self.action = action
        self.explanation = explanation
        self.fix = fix

    def __str__(self) -> str:
        return f"the Docker engine refused to {self.action}: {self.explanation}; {self.fix}"


class RemoteEngineError(DockervolError):
    """Host volumes bind host paths; a remote engine cannot see this machine's files."""

    def __init__(self, address: str, engine_host: str) -> None:
        super().__init__(address, engine_host)
        self.address = address
        self.engine_host = engine_host

    def __str__(self) -> str:
        return (
            f"host volumes need an engine on this machine, but the engine at {self.address} "
            f"runs on {self.engine_host!r}; use named_volume or anonymous_volume instead"
        )

"""Typed errors: each says what went wrong and how to fix it, on one line."""

from __future__ import annotations

import dataclasses
import re
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import pytest

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


#: A word this long in a message (a path, a URL) is cut: the line stays readable.
_LONG_WORD = re.compile(r"\S{100,}")
_KEPT = 60
#: A cause longer than this keeps its start and its end, where an engine says why.
_LONGEST_CAUSE = 200


def short_repr(text: str) -> str:
    """``repr(text)`` for a message, its first 60 characters only when it is long: a
    5,000-byte path must not bury the rest of the line."""
    if len(text) <= _KEPT + 20:
        return repr(text)
    return f"{text[:_KEPT]!r}...({len(text):,} characters)"


def one_line(text: str) -> str:
    """Text as one line of a message: lines and runs of spaces joined, and each word of
    100 characters or more (a long path, a URL) cut to its first 60 and its length. Text
    still over 200 characters keeps its first 60 and its end, where an error says why."""

    def cut(match: re.Match[str]) -> str:
        word = match.group()
        end = word[-1] if word[-1] in ":;,.)]'\"" else ""
        return f"{word[:_KEPT]}...({len(word):,} characters){end}"

    joined = _LONG_WORD.sub(cut, " ".join(text.split()))
    if len(joined) <= _LONGEST_CAUSE:
        return joined
    # Podman dumps whole Go structs before the cause: keep the start and the end.
    marker = f" ...({len(joined):,} characters)... "
    return joined[:_KEPT] + marker + joined[-(_LONGEST_CAUSE - _KEPT - len(marker)) :]


#: The ``state`` of an error about a volume the factory created and removed again.
REMOVED_STATE = "nothing is left (the new volume was removed); fix the cause and try again"


class DockervolError(Exception):
    """Base class of every error pytest-dockervol raises on purpose.

    Most are small dataclasses: their fields say what went wrong, ``__str__`` makes the
    one line a user reads, and the fields are also the exception's ``args``.
    """

    def __post_init__(self) -> None:
        fields = dataclasses.fields(cast("DataclassInstance", self))
        Exception.__init__(self, *(getattr(self, field.name) for field in fields))


class DockervolUsageError(DockervolError, ValueError):
    """Family: an argument, option or name the plugin cannot use; the message names the
    fix. Nothing was created."""


class EngineError(DockervolError, RuntimeError):
    """Family: the Docker engine cannot be reached, refused what was asked, or cannot do
    it (too old, remote, an image missing)."""


class SeedError(DockervolError, RuntimeError):
    """Family: a seed cannot be used (nothing was written) or writing it failed."""


class VolumeError(DockervolError, RuntimeError):
    """Family: a volume cannot be created, read, copied or changed as asked."""


class CacheError(DockervolError, RuntimeError):
    """Family: a golden-cache entry cannot be built or used."""


@dataclass(eq=False)
class CleanupError(DockervolError, RuntimeError):
    """Family (and its one member): something the plugin created could not be removed."""

    what: str
    name: str
    reason: str

    def __str__(self) -> str:
        return f"could not remove {self.what} {self.name}: {one_line(self.reason)}"


#: The longest volume name accepted: Linux's longest file name (the local driver makes
#: ``/var/lib/docker/volumes/<name>``).
MAX_VOLUME_NAME = 255


class DockervolCleanupWarning(pytest.PytestWarning):
    """Something pytest-dockervol created could not be removed (the message says why)."""


def check_ispytest(ispytest: bool) -> None:
    """Warn when a class meant to come from a fixture is built by hand, as pytest does."""
    if not ispytest:
        warnings.warn(
            pytest.PytestDeprecationWarning(
                "A private pytest-dockervol class or function was used; "
                "get it from its fixture (volume_factory, run_container) instead."
            ),
            stacklevel=3,
        )


@dataclass(eq=False)
class EngineUnavailableError(EngineError, ConnectionError):
    """No Docker engine answered where DOCKER_HOST, the Docker CLI context or the default
    points (``address`` names both the address and what chose it)."""

    address: str
    reason: str
    fix: str = "start dockerd or point DOCKER_HOST at a running engine"

    def __str__(self) -> str:
        return f"cannot reach a Docker engine at {self.address} ({self.reason}); {self.fix}"


@dataclass(eq=False)
class DockerContextError(EngineUnavailableError):
    """The Docker CLI context to use does not exist or cannot be read: there is no address
    to try (and the default socket is not tried in its place). ``address`` names the
    context and what chose it, ``reason`` what is wrong with it."""

    def __str__(self) -> str:
        return f"{self.address} {self.reason}; {self.fix}"


@dataclass(eq=False)
class SeedPathError(SeedError, ValueError):
    """A path in a seed would land outside the volume or is not a valid file name."""

    path: str
    why: str
    fix: str = "use a relative POSIX path that stays inside the volume"

    def __str__(self) -> str:
        return f"path {short_repr(self.path)} {self.why}; {self.fix}"


class SeedSourceError(SeedError, ValueError):
    """The seed source itself is missing, unreadable or of an unsupported kind."""


@dataclass(eq=False)
class VolumeNameError(DockervolUsageError):
    """A volume name Docker would reject."""

    name: str

    def __str__(self) -> str:
        return (
            f"invalid volume name {short_repr(str(self.name))}: use at least 2 characters "
            "from [a-zA-Z0-9_.-], starting with a letter or digit, and at most "
            f"{MAX_VOLUME_NAME} (the longest file name Linux allows)"
        )


@dataclass(eq=False)
class VolumeExistsError(VolumeError):
    """A volume of the requested name exists and was not created by this run."""

    name: str
    created_by_this_run_for: str | None = None

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


@dataclass(eq=False)
class VolumeRemovedError(VolumeError):
    """The volume object was used after `.remove()`."""

    name: str

    def __str__(self) -> str:
        return f"volume {self.name!r} was already removed; create a new one from volume_factory"


@dataclass(eq=False)
class VolumeReadError(VolumeError, FileNotFoundError):
    """A path read back from a volume does not exist or is not a regular file."""

    volume: str
    path: str
    why: str

    def __str__(self) -> str:
        return f"cannot read {self.path!r} from volume {self.volume!r}: {self.why}"


@dataclass(eq=False)
class ImageNotFoundLocallyError(EngineError, LookupError):
    """The image for a test container is not on the engine; the plugin never pulls."""

    image: str

    def __str__(self) -> str:
        return (
            f"image {self.image!r} is not on the Docker engine and pytest-dockervol never "
            f"pulls; run `docker pull {self.image}` or build it before the tests"
        )


@dataclass(eq=False)
class LabelError(DockervolUsageError):
    """A label the plugin cannot accept."""

    label: str
    why: str

    def __str__(self) -> str:
        return f"label {self.label}: {self.why}; rename or drop that label"


@dataclass(eq=False)
class HostPathError(DockervolUsageError):
    """A host directory to bind does not exist or is not a directory."""

    path: str
    why: str

    def __str__(self) -> str:
        return (
            f"host directory {self.path!r} {self.why}; create it first, or call "
            "volume_factory.host() without a path for a fresh one"
        )


@dataclass(eq=False)
class VolumeInUseError(VolumeError):
    """A volume cannot be copied or restored while other containers use it."""

    volume: str
    action: str
    users: str
    fix: str

    def __str__(self) -> str:
        return f"cannot {self.action} volume {self.volume}: used by {self.users}; {self.fix}"


@dataclass(eq=False)
class SeedWriteError(SeedError):
    """Writing a checked seed into a volume failed part-way (full disk, a racing container,
    an engine error); the volume may hold part of the seed."""

    volume: str
    cause: str
    #: What is left, and what to do: the factory rewrites it when it removed the volume.
    state: str = (
        "the volume holds part of the seed: remove the volume or seed it again once the "
        "cause is fixed"
    )

    def __str__(self) -> str:
        return f"could not seed volume {self.volume}: {one_line(self.cause)}; {self.state}"


@dataclass(eq=False)
class VolumeCopyError(VolumeError):
    """Copying a volume's files (clone, snapshot, restore) failed."""

    source: str
    target: str
    why: str
    #: What is left, and what to do: the factory rewrites it when it removed the target.
    state: str = "the target is incomplete, remove it or restore it again"

    def __str__(self) -> str:
        return (
            f"could not copy volume {self.source} into {self.target}: {one_line(self.why)}; "
            f"{self.state}"
        )


@dataclass(eq=False)
class EngineRefusedError(EngineError):
    """The engine answered with an error to something the plugin asked."""

    action: str
    explanation: str
    fix: str

    def __str__(self) -> str:
        explanation = one_line(self.explanation)
        return f"the Docker engine refused to {self.action}: {explanation}; {self.fix}"


@dataclass(eq=False)
class EngineFeatureError(EngineError):
    """Something this engine cannot do: refused before anything is asked of it, because
    the engine would ignore what it does not support instead of refusing it."""

    feature: str
    needed: str
    engine: str
    fix: str

    def __str__(self) -> str:
        return f"{self.feature} need {self.needed}; this engine is {self.engine}; {self.fix}"


class EngineVersionError(EngineFeatureError):
    """A feature the engine is too old for (a subpath mount on API 1.44 or older would
    mount the whole volume)."""


@dataclass(eq=False)
class RemoteEngineError(EngineError):
    """Host volumes bind host paths; a remote engine cannot see this machine's files."""

    address: str
    engine_host: str

    def __str__(self) -> str:
        return (
            f"host volumes need an engine on this machine, but the engine at {self.address} "
            f"runs on {self.engine_host!r}; use named_volume or anonymous_volume instead"
        )


@dataclass(eq=False)
class ClonesAliveError(VolumeError):
    """A volume read by live copy-on-write clones as their lower layer cannot change."""

    volume: str
    action: str
    clones: str

    def __str__(self) -> str:
        return (
            f"cannot {self.action} volume {self.volume}: copy-on-write clone(s) {self.clones} "
            "read it as their lower layer; remove the clones first (clone.remove()), or "
            "change a clone instead"
        )


@dataclass(eq=False)
class BuiltOnceError:
    """What a build made once per run (a shared volume, a cache entry) says when it failed:
    the process that built it wrote the cause, and every process asking raises it too."""

    key: str
    cause: str
    #: Which process failed first ("this process", "another process of this run (gw1)").
    where: str


@dataclass(eq=False)
class SharedSeedError(BuiltOnceError, SeedError):
    """Seeding a run-wide shared volume failed; every worker asking for it gets this error."""

    def __str__(self) -> str:
        return (
            f"shared volume {self.key!r} could not be seeded ({one_line(self.cause)}, first "
            f"raised in {self.where}); fix the seed: the run does not retry it"
        )


@dataclass(eq=False)
class CacheBuildError(BuiltOnceError, CacheError):
    """Building a golden-cache entry failed (in this process or in another of the run)."""

    @property
    def error(self) -> str:
        """The cause, under the name this field had at first (kept for user code)."""
        return self.cause

    def __str__(self) -> str:
        return (
            f"golden cache entry {self.key!r} could not be built ({self.where}): "
            f"{one_line(self.cause)}; fix the seed: a failed build is never used, and the "
            "next run builds it again"
        )

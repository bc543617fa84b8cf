"""pytest-dockervol: real Docker volumes for pytest, seeded, attached and removed safely."""

from __future__ import annotations

from ._anonymous import AnonymousVolume
from ._cache import CachedVolume
from ._containers import ContainerRunner
from ._docker_volume import DockerVolume, NamedVolume, Snapshot
from ._errors import (
    CacheBuildError,
    CleanupError,
    ClonesAliveError,
    DockerContextError,
    DockervolCleanupWarning,
    DockervolError,
    DockervolUsageError,
    EngineRefusedError,
    EngineUnavailableError,
    EngineVersionError,
    HostPathError,
    ImageNotFoundLocallyError,
    LabelError,
    RemoteEngineError,
    SeedError,
    SeedPathError,
    SeedSourceError,
    SeedWriteError,
    SharedSeedError,
    VolumeCopyError,
    VolumeExistsError,
    VolumeInUseError,
    VolumeNameError,
    VolumeReadError,
    VolumeRemovedError,
)
from ._factory import VolumeFactory
from ._host_volume import HostVolume
from ._seeds import SeedFile
from ._shared import SharedVolume
from ._volume import Entry, Volume

__all__ = [
    "AnonymousVolume",
    "CacheBuildError",
    "CachedVolume",
    "CleanupError",
    "ClonesAliveError",
    "ContainerRunner",
    "DockerContextError",
    "DockerVolume",
    "DockervolCleanupWarning",
    "DockervolError",
    "DockervolUsageError",
    "EngineRefusedError",
    "EngineUnavailableError",
    "EngineVersionError",
    "Entry",
    "HostPathError",
    "HostVolume",
    "ImageNotFoundLocallyError",
    "LabelError",
    "NamedVolume",
    "RemoteEngineError",
    "SeedError",
    "SeedFile",
    "SeedPathError",
    "SeedSourceError",
    "SeedWriteError",
    "SharedSeedError",
    "SharedVolume",
    "Snapshot",
    "Volume",
    "VolumeCopyError",
    "VolumeExistsError",
    "VolumeFactory",
    "VolumeInUseError",
    "VolumeNameError",
    "VolumeReadError",
    "VolumeRemovedError",
]

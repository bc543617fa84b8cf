"""pytest-dockervol: real Docker volumes for pytest, seeded, attached and removed safely."""

from __future__ import annotations

from ._cache.cached import CachedVolume
from ._cache.shared import SharedVolume
from ._errors import (
    CacheBuildError,
    CacheError,
    CleanupError,
    ClonesAliveError,
    DockerContextError,
    DockervolCleanupWarning,
    DockervolError,
    DockervolUsageError,
    EngineError,
    EngineFeatureError,
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
    VolumeError,
    VolumeExistsError,
    VolumeInUseError,
    VolumeNameError,
    VolumeReadError,
    VolumeRemovedError,
)
from ._factory import VolumeFactory
from ._seeding.sources import SeedFile
from ._volumes.anonymous import AnonymousVolume
from ._volumes.base import Volume
from ._volumes.containers import ContainerRunner
from ._volumes.docker import DockerVolume, NamedVolume, Snapshot
from ._volumes.helper import Entry
from ._volumes.host import HostVolume

__all__ = [
    "AnonymousVolume",
    "CacheBuildError",
    "CacheError",
    "CachedVolume",
    "CleanupError",
    "ClonesAliveError",
    "ContainerRunner",
    "DockerContextError",
    "DockerVolume",
    "DockervolCleanupWarning",
    "DockervolError",
    "DockervolUsageError",
    "EngineError",
    "EngineFeatureError",
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
    "VolumeError",
    "VolumeExistsError",
    "VolumeFactory",
    "VolumeInUseError",
    "VolumeNameError",
    "VolumeReadError",
    "VolumeRemovedError",
]

"""pytest-dockervol: real Docker volumes for pytest, seeded, attached and removed safely."""

from __future__ import annotations

from ._archive import SeedFile
from ._errors import (
    CleanupError,
    DockervolError,
    DockervolUsageError,
    EngineRefusedError,
    EngineUnavailableError,
    HostPathError,
    ImageNotFoundLocallyError,
    LabelError,
    RemoteEngineError,
    SeedError,
    SeedPathError,
    SeedSourceError,
    SharedSeedError,
    VolumeCopyError,
    VolumeExistsError,
    VolumeInUseError,
    VolumeNameError,
    VolumeReadError,
    VolumeRemovedError,
)
from ._factory import DockervolCleanupWarning, VolumeFactory
from ._shared import SharedVolume
from ._snapshot import Snapshot
from ._volumes import AnonymousVolume, DockerVolume, HostVolume, NamedVolume, Volume
from .fixtures import ContainerRunner

__all__ = [
    "AnonymousVolume",
    "CleanupError",
    "ContainerRunner",
    "DockerVolume",
    "DockervolCleanupWarning",
    "DockervolError",
    "DockervolUsageError",
    "EngineRefusedError",
    "EngineUnavailableError",
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

"""The versions the package declares are the versions CI proves (no engine needed)."""

from __future__ import annotations

import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest needs tomli below 3.11
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def declared_floors() -> dict[str, str]:
    """Each ``>=`` lower bound of the dependencies and of the xdist and test extras."""
    extras = PROJECT["optional-dependencies"]
    floors: dict[str, str] = {}
    for line in [*PROJECT["dependencies"], *extras["xdist"], *extras["test"]]:
        requirement = Requirement(line)
        for spec in requirement.specifier:
            if spec.operator == ">=":
                assert floors.setdefault(requirement.name, spec.version) == spec.version, line
    return floors


def pinned_floors() -> dict[str, str]:
    pins = {}
    for line in (ROOT / ".ci" / "floors.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            assert spec.operator == "==", line
            pins[requirement.name] = spec.version
    return pins


def test_the_floors_job_pins_exactly_the_declared_floors() -> None:
    assert pinned_floors() == declared_floors()


def test_the_docker_sdk_floor_talks_to_engines_with_current_requests() -> None:
    # docker < 7.1 fails on every engine with requests >= 2.32 ("Not supported URL scheme
    # http+docker"): a floor below it is a false promise.
    assert declared_floors()["docker"] == "7.1.0"


def test_python_classifiers_cover_what_requires_python_allows() -> None:
    allowed = SpecifierSet(PROJECT["requires-python"])
    listed = [
        c.rsplit(" :: ", 1)[1]
        for c in PROJECT["classifiers"]
        if c.startswith("Programming Language :: Python :: 3.")
    ]
    assert listed == ["3.9", "3.10", "3.11", "3.12", "3.13"]
    assert all(version in allowed for version in listed)
    assert "3.8" not in allowed


def test_every_subpackage_is_shipped() -> None:
    """setuptools ships only the packages it is told: a new subpackage left out of the
    list works from a checkout and is missing from the wheel."""
    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "pytest_dockervol").rglob("__init__.py")
    }
    assert sorted(listed) == sorted(found)


#: ``__all__`` of 0.1.0 before the subpackages: user code imports these, so each stays.
PUBLIC_BEFORE_THE_SUBPACKAGES = [
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


def test_every_name_users_imported_still_imports() -> None:
    import pytest_dockervol

    missing = [
        name for name in PUBLIC_BEFORE_THE_SUBPACKAGES if not hasattr(pytest_dockervol, name)
    ]
    assert missing == []
    assert set(PUBLIC_BEFORE_THE_SUBPACKAGES) <= set(pytest_dockervol.__all__)
    # What a leaf was, it still is: a family is added above it, never put in its place.
    assert issubclass(pytest_dockervol.VolumeNameError, ValueError)
    assert issubclass(pytest_dockervol.VolumeReadError, FileNotFoundError)
    assert issubclass(pytest_dockervol.DockerContextError, pytest_dockervol.EngineUnavailableError)
    assert issubclass(pytest_dockervol.SeedPathError, pytest_dockervol.SeedError)
    assert pytest_dockervol.CacheBuildError("k", "boom", "here").error == "boom"

"""Property-based tests of seed path handling: nothing a seed names may land outside the
volume; legal names round-trip exactly through a real engine."""

from __future__ import annotations

import io
import os
import posixpath
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pytest_dockervol import NamedVolume, SeedError, SeedPathError, VolumeFactory
from pytest_dockervol._archive import SeedPlan, build_seed_plan, check_relative_path

# Names built from the pieces that matter: separators, dots, NUL/newlines, unicode.
PIECES = st.sampled_from(
    ["a", "b", "..", ".", "", "/", "//", "\x00", "\n", "\r", "é", "日本", " ", "-"]
)
PATHS = st.lists(PIECES, min_size=0, max_size=8).map("".join) | st.text(max_size=40)
SAFE_CHARS = st.characters(
    blacklist_categories=("Cs", "Cc"), blacklist_characters="/\x00\n\r", min_codepoint=32
)
SAFE_SEGMENT = st.text(SAFE_CHARS, min_size=1, max_size=20).filter(lambda s: s not in (".", ".."))
SAFE_PATHS = st.lists(SAFE_SEGMENT, min_size=1, max_size=12).map("/".join)


def _inside(name: str, *, root_ok: bool = False) -> bool:
    """Would this member, extracted at /v, stay inside /v? (A link may name /v itself.)"""
    if name.startswith("/") or "\x00" in name:
        return False
    full = posixpath.normpath(posixpath.join("/v", name))
    return full.startswith("/v/") or (root_ok and full == "/v")


def _members(plan: SeedPlan) -> list[tarfile.TarInfo]:
    data = b"".join(plan.tar_chunks())
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        return tar.getmembers()


def _assert_contained(members: list[tarfile.TarInfo]) -> None:
    names = set()
    for member in members:
        assert _inside(member.name), member.name
        assert "\n" not in member.name
        assert "\r" not in member.name
        if member.issym():
            target = posixpath.join(posixpath.dirname(member.name), member.linkname)
            assert not member.linkname.startswith("/"), member.linkname
            assert _inside(target, root_ok=True), (member.name, member.linkname)
        if member.islnk():
            assert member.linkname in names, "hard links point to earlier members only"
        assert member.type in (tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE)
        names.add(member.name)


@given(PATHS)
def test_check_relative_path_accepts_only_paths_inside(path: str) -> None:
    refusal: str | None = None
    try:
        normalized = check_relative_path(path)
    except SeedPathError as exc:
        refusal = str(exc)
    if refusal is not None:
        assert "\n" not in refusal
        return
    assert _inside(normalized)
    assert normalized == posixpath.normpath(normalized)
    assert not set(normalized) & {"\x00", "\n", "\r"}


@given(st.dictionaries(PATHS, st.binary(max_size=8), min_size=1, max_size=5))
def test_mapping_seeds_never_escape(mapping: dict[str, bytes]) -> None:
    try:
        plan = build_seed_plan(mapping)
    except SeedError:
        return
    _assert_contained(_members(plan))


MEMBER = st.tuples(
    PATHS,
    st.sampled_from(
        [
            tarfile.REGTYPE,
            tarfile.DIRTYPE,
            tarfile.SYMTYPE,
            tarfile.LNKTYPE,
            tarfile.CHRTYPE,
            tarfile.BLKTYPE,
            tarfile.FIFOTYPE,
        ]
    ),
    PATHS,
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=150)
@given(st.lists(MEMBER, min_size=1, max_size=6))
def test_archive_seeds_never_escape(tmp_path: Path, members: list[tuple[str, bytes, str]]) -> None:
    archive = tmp_path / "hostile.tar"
    with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, link in members:
            assume("\x00" not in name and "\x00" not in link)  # tarfile cannot even write these
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = link
            data = b"x" if kind == tarfile.REGTYPE else b""
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)
    refusal: str | None = None
    try:
        plan = build_seed_plan(archive)
    except SeedError as exc:
        refusal = str(exc)
    if refusal is not None:
        assert "\n" not in refusal.replace("\\n", "")
        return
    _assert_contained(_members(plan))


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=60)
@given(st.lists(st.tuples(SAFE_PATHS, PATHS), min_size=1, max_size=4))
def test_directory_symlinks_never_escape(
    tmp_path_factory: pytest.TempPathFactory, links: list[tuple[str, str]]
) -> None:
    root = tmp_path_factory.mktemp("tree")
    for name, target in links:
        assume("\x00" not in target and target)
        link = root / name
        try:
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(target, link)
        except (OSError, ValueError):
            assume(False)
    try:
        plan = build_seed_plan(root)
    except SeedError:
        return
    _assert_contained(_members(plan))


@pytest.fixture(scope="module")
def roundtrip_volume(volume_factory: VolumeFactory) -> NamedVolume:
    return volume_factory.named()


@settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    max_examples=25,
    deadline=None,
)
@given(path=SAFE_PATHS, content=st.binary(max_size=300))
def test_legal_names_round_trip_through_the_engine(
    roundtrip_volume: NamedVolume, path: str, content: bytes
) -> None:
    assume(len(path.encode()) < 3000)
    try:
        normalized = check_relative_path(path)
    except SeedPathError:
        assume(False)
    before = roundtrip_volume.files()
    prefix = f"case{len(before)}"
    roundtrip_volume.seed({normalized: content}, dest=prefix)
    assert roundtrip_volume.read_bytes(f"{prefix}/{normalized}") == content
    assert f"{prefix}/{normalized}" in roundtrip_volume.files()


@settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=20, deadline=None
)
@given(bad=PATHS)
def test_refused_seed_leaves_the_volume_unchanged(roundtrip_volume: NamedVolume, bad: str) -> None:
    try:
        check_relative_path(bad)
    except SeedPathError:
        pass
    else:
        assume(False)
    before = roundtrip_volume.files()
    with pytest.raises(SeedPathError):
        roundtrip_volume.seed({"ok.txt": "fine", bad: "evil"})
    assert roundtrip_volume.files() == before

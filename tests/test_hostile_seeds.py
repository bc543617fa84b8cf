"""Property-based tests of seed path handling: nothing a seed names may land outside the
volume; legal names round-trip exactly through a real engine."""

from __future__ import annotations

import io
import os
import posixpath
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from pytest_dockervol import NamedVolume, SeedError, SeedPathError, VolumeFactory
from pytest_dockervol._seeding.plan import SeedPlan
from pytest_dockervol._seeding.sources import build_seed_plan, check_relative_path

T = TypeVar("T")
R = TypeVar("R")

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


def _members(plan: SeedPlan) -> dict[str, tuple[tarfile.TarInfo, bytes | None]]:
    data = b"".join(plan.tar_chunks())
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        members = {}
        for member in tar:
            content = tar.extractfile(member) if member.isreg() else None
            members[member.name] = (member, content.read() if content else None)
    return members


def _assert_contained(plan: SeedPlan) -> dict[str, tuple[tarfile.TarInfo, bytes | None]]:
    """Every member stays inside the volume; returns the members for checks of landing."""
    members = _members(plan)
    names: set[str] = set()
    for name, (member, _content) in members.items():
        assert _inside(name), name
        assert "\n" not in name
        assert "\r" not in name
        if member.issym():
            target = posixpath.join(posixpath.dirname(name), member.linkname)
            assert not member.linkname.startswith("/"), member.linkname
            assert _inside(target, root_ok=True), (name, member.linkname)
        if member.islnk():
            assert member.linkname in names, "hard links point to earlier members only"
        assert member.type in (tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE)
        names.add(name)
    return members


class Outcomes:
    """Counts what a property test's examples did: a test whose examples were all refused
    (or all accepted) would prove nothing about the other half."""

    def __init__(self) -> None:
        self.accepted = 0
        self.refused = 0

    def attempt(self, check: Callable[[T], R], source: T) -> R | None:
        """``check(source)``, or None if it refuses the source (with a one-line error)."""
        refusal: str | None = None
        try:
            result = check(source)
        except SeedError as exc:
            refusal = str(exc)
        if refusal is not None:
            self.refused += 1
            assert "\n" not in refusal.replace("\\n", "")  # one line (a repr'd \n is fine)
            return None
        self.accepted += 1
        return result

    def assert_both_seen(self) -> None:
        assert self.accepted > 0, "no generated seed was accepted: the test proved nothing"
        assert self.refused > 0, "no generated seed was refused: the hostile cases never ran"


def test_check_relative_path_accepts_only_paths_inside() -> None:
    outcomes = Outcomes()

    @given(PATHS)
    def check(path: str) -> None:
        normalized = outcomes.attempt(check_relative_path, path)
        if normalized is None:
            return
        assert _inside(normalized)
        assert normalized == posixpath.normpath(normalized)
        assert not set(normalized) & {"\x00", "\n", "\r"}

    check()
    outcomes.assert_both_seen()


def test_mapping_seeds_never_escape_and_land_where_they_say() -> None:
    outcomes = Outcomes()

    @given(st.dictionaries(PATHS | SAFE_PATHS, st.binary(max_size=8), min_size=1, max_size=5))
    def check(mapping: dict[str, bytes]) -> None:
        plan = outcomes.attempt(build_seed_plan, mapping)
        if plan is None:
            return
        members = _assert_contained(plan)
        for key, content in mapping.items():
            member, landed = members[check_relative_path(key)]
            assert member.isreg()
            assert landed == content
        assert plan.file_count == len(mapping)

    check()
    outcomes.assert_both_seen()


MEMBER = st.tuples(
    PATHS | SAFE_PATHS,
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
    PATHS | SAFE_PATHS,
)


def test_archive_seeds_never_escape_and_land_where_they_say(tmp_path: Path) -> None:
    outcomes = Outcomes()

    @settings(max_examples=150)
    @given(st.lists(MEMBER, min_size=1, max_size=6))
    @example([("a", tarfile.REGTYPE, ""), ("/", tarfile.DIRTYPE, "")])  # "/" is read as ""
    def check(members: list[tuple[str, bytes, str]]) -> None:
        archive = tmp_path / "hostile.tar"
        with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tar:
            for name, kind, link in members:
                assume("\x00" not in name and "\x00" not in link)  # tarfile cannot write these
                info = tarfile.TarInfo(name)
                info.type = kind
                info.linkname = link
                data = b"x" if kind == tarfile.REGTYPE else b""
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data) if data else None)
        plan = outcomes.attempt(build_seed_plan, archive)
        if plan is None:
            return
        landed = _assert_contained(plan)
        for name, kind, link in members:
            if posixpath.normpath(name.rstrip("/") or ".") == ".":
                continue  # the archive's own root ("/" is read back as "", as tar does)
            member, content = landed[check_relative_path(name)]
            assert member.type == kind
            if kind == tarfile.REGTYPE:
                assert content == b"x"
            if kind == tarfile.SYMTYPE:
                assert member.linkname == link

    check()
    outcomes.assert_both_seen()


def test_directory_symlinks_never_escape_and_land_where_they_say(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    outcomes = Outcomes()

    @settings(max_examples=60)
    @given(st.lists(st.tuples(SAFE_PATHS, PATHS | SAFE_PATHS), min_size=1, max_size=4))
    def check(links: list[tuple[str, str]]) -> None:
        root = tmp_path_factory.mktemp("tree")
        made: dict[str, str] = {}
        for name, target in links:
            assume("\x00" not in target and target)
            # Never create a link below another: the first could lead the second out of root.
            assume(
                not any(
                    name.startswith(f"{other}/") or other.startswith(f"{name}/") for other in made
                )
            )
            link = root / name
            try:
                link.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(target, link)
            except (OSError, ValueError):
                assume(False)
            made[name] = target
        plan = outcomes.attempt(build_seed_plan, root)
        if plan is None:
            return
        landed = _assert_contained(plan)
        for name, target in made.items():
            member, _content = landed[name]
            assert member.issym()
            assert member.linkname == target

    check()
    outcomes.assert_both_seen()


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

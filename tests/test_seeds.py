"""Seed sources and path rules: what a mapping, a directory or an archive plans, and every
refusal, checked before anything is written (pure logic, no engine needed)."""

from __future__ import annotations

import os
import socket
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest
from tarfiles import Member, by_name, make_tree, member, needs_non_root, parse, write_tar

from pytest_dockervol import SeedFile, SeedPathError, SeedSourceError
from pytest_dockervol._seeding.sources import SeedOptions, build_seed_plan, check_relative_path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "tree")


# -- check_relative_path ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("../x", "escapes the volume"),
        ("a/../../b", "escapes the volume"),
        ("..", "escapes the volume"),
        ("/etc/passwd", "is absolute"),
        ("", "is empty"),
        (".", "volume root"),
        ("./", "volume root"),
        ("a/..", "volume root"),
        ("a\0b", "contains a NUL byte"),
        ("a\nb", "contains a newline"),
        ("a\rb", "contains a newline"),
    ],
)
def test_check_relative_path_refuses(path: str, why: str) -> None:
    with pytest.raises(SeedPathError, match=why) as info:
        check_relative_path(path)
    assert info.value.path == path


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("a/../b", "b"),
        ("./a//b/", "a/b"),
        ("file.txt", "file.txt"),
        ("..hidden/x", "..hidden/x"),
        ("répertoire/été ☃.txt", "répertoire/été ☃.txt"),
        ("/".join(["d"] * 60) + "/f", "/".join(["d"] * 60) + "/f"),
    ],
)
def test_check_relative_path_normalizes(path: str, expected: str) -> None:
    assert check_relative_path(path) == expected


# -- mapping seeds --------------------------------------------------------------------------


def test_mapping_round_trip_parents_first_with_default_metadata(tmp_path: Path) -> None:
    host = tmp_path / "host.bin"
    host.write_bytes(b"\x00host\xff" * 1000)
    before = int(time.time())
    plan = build_seed_plan(
        {"b/c/d.txt": "héllo", "a.bin": b"\x00\x01", "b/e": host, "b/c/f": SeedFile(b"x")}
    )
    members = parse(plan)
    names = [m.name for m, _ in members]
    assert names == ["a.bin", "b", "b/c", "b/c/d.txt", "b/c/f", "b/e"]
    assert plan.file_count == 4
    found = by_name(members)
    assert found["b/c/d.txt"][1] == "héllo".encode()
    assert found["a.bin"][1] == b"\x00\x01"
    assert found["b/e"][1] == host.read_bytes()
    for m, _ in members:
        assert (m.uid, m.gid) == (0, 0)
        assert m.mode == (0o755 if m.isdir() else 0o644)
        assert before <= m.mtime <= time.time() + 1


def test_mapping_each_parent_emitted_once_before_children() -> None:
    plan = build_seed_plan({"x/y/1": "", "x/2": "", "x/y/z/3": "", "w/4": ""})
    names = [m.name for m, _ in parse(plan)]
    assert len(names) == len(set(names))
    for i, name in enumerate(names):
        parent = name.rpartition("/")[0]
        assert not parent or parent in names[:i], name


def test_mapping_overrides_and_per_file_mode() -> None:
    plan = build_seed_plan(
        {"d/plain": "p", "d/tool": SeedFile("#!/bin/sh\n", mode=0o755)},
        SeedOptions(
            uid=1000,
            gid=2000,
            file_mode=0o600,
            dir_mode=0o700,
        ),
    )
    found = by_name(parse(plan))
    assert found["d"][0].mode == 0o700
    assert found["d/plain"][0].mode == 0o600
    assert found["d/tool"][0].mode == 0o755
    assert {(m.uid, m.gid) for m, _ in found.values()} == {(1000, 2000)}


def test_mapping_unicode_and_long_names_survive_pax() -> None:
    long_name = "/".join(["segment-" + "x" * 40] * 5) + "/ünïcødé file.txt"
    found = by_name(parse(build_seed_plan({long_name: "ok"})))
    assert found[long_name][1] == b"ok"


def test_mapping_empty_file_and_block_padding() -> None:
    files = {f"f{n}": b"z" * n for n in (0, 1, 511, 512, 513, 1024, 70000)}
    found = by_name(parse(build_seed_plan(files), chunk_size=1000))
    assert {name: data for name, (_, data) in found.items()} == files


@pytest.mark.parametrize(
    ("mapping", "why"),
    [
        ({"a/b": "1", "a//b/": "2"}, "duplicates seed path"),
        ({"a": "x", "a/b": "y"}, "needs 'a' to be a directory"),
        ({"a/b/c": "x", "a/b": "y"}, "needs 'a/b' to be a directory"),
        ({"../up": "x"}, "escapes the volume"),
        ({"/abs": "x"}, "is absolute"),
    ],
)
def test_mapping_path_conflicts_refused(mapping: dict[str, str], why: str) -> None:
    with pytest.raises(SeedPathError, match=why):
        build_seed_plan(mapping)


@pytest.mark.parametrize("value", [42, None, ["x"], 1.5])
def test_mapping_value_of_wrong_type_names_key_and_types(value: Any) -> None:
    with pytest.raises(SeedSourceError, match=r"'my/key'.*str, bytes, os\.PathLike"):
        build_seed_plan({"my/key": value})


def test_mapping_pathlike_must_be_existing_regular_file(tmp_path: Path) -> None:
    with pytest.raises(SeedSourceError, match="'k'"):
        build_seed_plan({"k": tmp_path / "missing"})
    with pytest.raises(SeedSourceError, match="is not a regular file"):
        build_seed_plan({"k": tmp_path})
    os.mkfifo(tmp_path / "fifo")  # refused without blocking on open
    with pytest.raises(SeedSourceError, match="is not a regular file"):
        build_seed_plan({"k": SeedFile(tmp_path / "fifo")})
    (tmp_path / "real").write_bytes(b"real")
    (tmp_path / "alias").symlink_to(tmp_path / "real")  # a link to a file is copied as a file
    assert by_name(parse(build_seed_plan({"k": tmp_path / "alias"})))["k"][1] == b"real"


def test_seedfile_mode_validated() -> None:
    with pytest.raises(SeedSourceError, match=r"SeedFile\.mode"):
        build_seed_plan({"k": SeedFile("x", mode=0o10000)})


@pytest.mark.parametrize("source", [b"raw bytes", 12, ["a"], None])
def test_unsupported_source_type(source: Any) -> None:
    with pytest.raises(SeedSourceError, match="unsupported seed source"):
        build_seed_plan(source)


def test_missing_source_path(tmp_path: Path) -> None:
    with pytest.raises(SeedSourceError, match="does not exist"):
        build_seed_plan(tmp_path / "nope")
    with pytest.raises(SeedSourceError, match="does not exist"):
        build_seed_plan(str(tmp_path / "nope.tar"))


@pytest.mark.parametrize(
    "kwargs", [{"uid": -1}, {"gid": "0"}, {"file_mode": 0o17777}, {"dir_mode": True}]
)
def test_invalid_overrides_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(SeedSourceError, match="must be an int"):
        build_seed_plan({"a": "b"}, SeedOptions(**kwargs))


# -- dest -------------------------------------------------------------------------------------


def test_dest_prefixes_everything_and_comes_first() -> None:
    plan = build_seed_plan({"a/b": "x"}, SeedOptions(dest="./srv//data/", dir_mode=0o750, uid=7))
    members = parse(plan)
    assert [m.name for m, _ in members] == ["srv", "srv/data", "srv/data/a", "srv/data/a/b"]
    assert [(m.mode, m.uid) for m, _ in members[:3]] == [(0o750, 7)] * 3


@pytest.mark.parametrize("dest", ["../out", "/abs", "."])
def test_dest_is_checked(dest: str) -> None:
    with pytest.raises(SeedPathError):
        build_seed_plan({"a": "x"}, SeedOptions(dest=dest))


# -- directory seeds -------------------------------------------------------------------------


def test_directory_seed_walk(tree: Path) -> None:
    plan = build_seed_plan(tree)
    members = parse(plan)
    found = by_name(members)
    assert list(found) == [
        "dirlink",
        "hard",
        "link-to-data",
        "private",
        "run.sh",
        "sub",
        "sub/data.txt",
        "sub/empty",
        "sub/up",
    ]
    assert found["run.sh"][0].mode == 0o755  # any execute bit -> 0o755
    assert found["private"][0].mode == 0o644
    assert found["sub"][0].isdir()
    assert found["sub"][0].mode == 0o755
    assert found["sub/empty"][0].isdir()
    assert found["sub/data.txt"][1] == b"data"
    assert found["hard"][0].isreg()
    assert found["hard"][1] == b"data"
    link = found["link-to-data"][0]
    assert link.issym()
    assert link.linkname == "sub/data.txt"
    assert found["sub/up"][0].linkname == "../run.sh"
    assert found["dirlink"][0].issym()
    assert not any(name.startswith("dirlink/") for name in found)  # not followed
    assert {(m.uid, m.gid) for m, _ in members} == {(0, 0)}
    assert plan.file_count == 4
    assert found["sub/data.txt"][0].mtime == int((tree / "sub" / "data.txt").stat().st_mtime)


def test_directory_seed_overrides(tree: Path) -> None:
    members = parse(
        build_seed_plan(tree, SeedOptions(file_mode=0o640, dir_mode=0o710, uid=5, gid=6))
    )
    for m, _ in members:
        if m.isdir():
            assert m.mode == 0o710
        elif m.isreg():
            assert m.mode == 0o640
        assert (m.uid, m.gid) == (5, 6)


def test_directory_seed_is_deterministic(tree: Path) -> None:
    plan = build_seed_plan(tree)
    assert b"".join(plan.tar_chunks()) == b"".join(build_seed_plan(tree).tar_chunks())
    assert b"".join(plan.tar_chunks()) == b"".join(plan.tar_chunks())  # replayable


@pytest.mark.parametrize(
    ("target", "why"),
    [("../../outside", "escapes the seed"), ("/etc/passwd", "absolute path")],
)
def test_directory_seed_refuses_escaping_symlinks(tree: Path, target: str, why: str) -> None:
    (tree / "sub" / "bad").symlink_to(target)
    with pytest.raises(SeedPathError, match=why) as info:
        build_seed_plan(tree)
    assert info.value.path == "sub/bad"


def test_directory_seed_refuses_fifo(tree: Path) -> None:
    os.mkfifo(tree / "sub" / "pipe")
    with pytest.raises(SeedSourceError, match="FIFO 'sub/pipe'"):
        build_seed_plan(tree)


def test_directory_seed_refuses_socket(tmp_path: Path) -> None:
    root = tmp_path / "s"
    root.mkdir()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(root / "sock"))
        with pytest.raises(SeedSourceError, match="socket"):
            build_seed_plan(root)


def test_directory_seed_refuses_newline_in_name(tree: Path) -> None:
    (tree / "bad\nname").write_text("x")
    with pytest.raises(SeedPathError, match="contains a newline"):
        build_seed_plan(tree)


@needs_non_root
def test_directory_seed_unreadable_file(tree: Path) -> None:
    (tree / "private").chmod(0)
    with pytest.raises(SeedSourceError, match="private"):
        build_seed_plan(tree)


@needs_non_root
def test_directory_seed_unreadable_dir(tree: Path) -> None:
    (tree / "sub").chmod(0)
    try:
        with pytest.raises(SeedSourceError, match="cannot read seed directory"):
            build_seed_plan(tree)
    finally:
        (tree / "sub").chmod(0o755)


def test_non_regular_path_source(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(SeedSourceError, match="neither a directory nor a file"):
        build_seed_plan(tmp_path / "fifo")


# -- archive seeds --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2", "w:xz"])
def test_archive_seed_preserves_metadata(tmp_path: Path, mode: str) -> None:
    archive = write_tar(
        tmp_path / "seed.tar",
        member("./", type=tarfile.DIRTYPE),
        member("./etc", type=tarfile.DIRTYPE, mode=0o750, uid=10, gid=11, mtime=1_000_000),
        member("./etc/app.conf", b"key=1\n", mode=0o640, uid=1000, gid=1001, mtime=1_234_567),
        member("./bin/tool", b"\x7fELF", mode=0o4755),
        member("./etc/link", type=tarfile.SYMTYPE, linkname="app.conf"),
        member("./etc/hard", type=tarfile.LNKTYPE, linkname="./etc/app.conf"),
        mode=mode,
    )
    plan = build_seed_plan(archive)
    assert plan.file_count == 3
    members = parse(plan)
    names = [m.name for m, _ in members]
    assert names == ["etc", "etc/app.conf", "bin", "bin/tool", "etc/link", "etc/hard"]
    found = by_name(members)
    etc = found["etc"][0]
    assert (etc.mode, etc.uid, etc.gid, etc.mtime) == (0o750, 10, 11, 1_000_000)
    conf, content = found["etc/app.conf"]
    assert (conf.mode, conf.uid, conf.gid, conf.mtime) == (0o640, 1000, 1001, 1_234_567)
    assert content == b"key=1\n"
    assert found["bin"][0].mode == 0o755  # synthetic parent
    assert found["bin/tool"][0].mode == 0o4755
    assert found["etc/link"][0].linkname == "app.conf"
    hard = found["etc/hard"][0]
    assert hard.islnk()
    assert hard.linkname == "etc/app.conf"


def test_archive_seed_overrides_and_dest(tmp_path: Path) -> None:
    archive = write_tar(
        tmp_path / "s.tar",
        member("d", type=tarfile.DIRTYPE, mode=0o700, uid=3),
        member("d/f", b"x", mode=0o600, uid=3, gid=4),
    )
    plan = build_seed_plan(
        archive, SeedOptions(dest="in", uid=1, gid=2, file_mode=0o664, dir_mode=0o775)
    )
    found = by_name(parse(plan))
    assert list(found) == ["in", "in/d", "in/d/f"]
    assert (found["in/d"][0].mode, found["in/d"][0].uid) == (0o775, 1)
    f = found["in/d/f"][0]
    assert (f.mode, f.uid, f.gid) == (0o664, 1, 2)


def test_archive_dir_listed_after_its_children_keeps_order_and_metadata(tmp_path: Path) -> None:
    archive = write_tar(
        tmp_path / "s.tar",
        member("a/b/f", b"x"),
        member("a", type=tarfile.DIRTYPE, mode=0o711, mtime=42),
    )
    members = parse(build_seed_plan(archive))
    assert [m.name for m, _ in members] == ["a", "a/b", "a/b/f"]
    assert (members[0][0].mode, members[0][0].mtime) == (0o711, 42)


@pytest.mark.parametrize(
    ("bad", "error", "why"),
    [
        (member("../escape", b"x"), SeedPathError, "escapes the volume"),
        (member("ok/../../escape", b"x"), SeedPathError, "escapes the volume"),
        (member("/etc/passwd", b"x"), SeedPathError, "is absolute"),
        (member("l", type=tarfile.SYMTYPE, linkname="../../x"), SeedPathError, "escapes"),
        (member("l", type=tarfile.SYMTYPE, linkname="/etc/shadow"), SeedPathError, "absolute"),
        (member("h", type=tarfile.LNKTYPE, linkname="missing"), SeedPathError, "hard link"),
        (member("h", type=tarfile.LNKTYPE, linkname="../x"), SeedPathError, "hard link"),
        (member("h", type=tarfile.LNKTYPE, linkname="d"), SeedPathError, "hard link"),
        (member("dev", type=tarfile.CHRTYPE), SeedSourceError, "device file"),
        (member("blk", type=tarfile.BLKTYPE), SeedSourceError, "device file"),
        (member("fifo", type=tarfile.FIFOTYPE), SeedSourceError, "FIFO"),
        (member("d/x", b"y"), SeedPathError, "appears more than once"),
        (member("d", b"y"), SeedPathError, "parent directory"),
        (member("sym/inside", b"y"), SeedPathError, "inside the symbolic link"),
        (member("f/under-file", b"y"), SeedPathError, "needs 'f' to be a directory"),
    ],
)
def test_archive_seed_refuses(
    tmp_path: Path, bad: Member, error: type[Exception], why: str
) -> None:
    archive = write_tar(
        tmp_path / "bad.tar",
        member("d/x", b"1"),
        member("sym", type=tarfile.SYMTYPE, linkname="d"),
        member("f", b"2"),
        bad,
    )
    with pytest.raises(error, match=why):
        build_seed_plan(archive)


def test_archive_hardlink_to_later_member_refused(tmp_path: Path) -> None:
    archive = write_tar(
        tmp_path / "s.tar",
        member("h", type=tarfile.LNKTYPE, linkname="f"),
        member("f", b"x"),
    )
    with pytest.raises(SeedPathError, match="not an earlier file"):
        build_seed_plan(archive)


def _good_tar(tmp_path: Path) -> bytes:
    path = write_tar(tmp_path / "good.tar", *(member(f"f{i}", b"z" * 3000) for i in range(3)))
    return path.read_bytes()


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda raw: b"this is not a tar file at all" * 40, id="garbage"),
        pytest.param(lambda raw: b"", id="empty"),
        pytest.param(lambda raw: raw[: 3584 + 512 + 1000], id="truncated-content"),
        pytest.param(lambda raw: raw[: 3584 + 100], id="truncated-header"),
        pytest.param(lambda raw: raw[:3584] + b"\x01" * 512 + raw[3584:], id="garbage-header"),
    ],
)
def test_unreadable_archives(tmp_path: Path, mangle: Any) -> None:
    broken = tmp_path / "broken.tar"
    broken.write_bytes(mangle(_good_tar(tmp_path)))
    with pytest.raises(SeedSourceError, match="is not a readable tar archive"):
        build_seed_plan(broken)


def test_truncated_gzip_archive(tmp_path: Path) -> None:
    path = write_tar(tmp_path / "s.tar.gz", member("f", os.urandom(50000)), mode="w:gz")
    path.write_bytes(path.read_bytes()[:-2000])
    with pytest.raises(SeedSourceError, match="is not a readable tar archive"):
        build_seed_plan(path)


def test_archive_changed_after_planning(tmp_path: Path) -> None:
    path = write_tar(tmp_path / "s.tar", member("a", b"1"), member("b", b"22"))
    plan = build_seed_plan(path)
    write_tar(path, member("a", b"1"), member("b", b"333"))
    with pytest.raises(SeedSourceError, match="changed"):
        b"".join(plan.tar_chunks())


def test_empty_archive_only_root(tmp_path: Path) -> None:
    path = write_tar(tmp_path / "s.tar", member(".", type=tarfile.DIRTYPE))
    plan = build_seed_plan(path, SeedOptions(dest="x"))
    assert [m.name for m, _ in parse(plan)] == ["x"]
    assert plan.file_count == 0

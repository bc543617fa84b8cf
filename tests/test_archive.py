"""Unit tests of seed plans and tar parsing: pure logic, no Docker engine needed."""

from __future__ import annotations

import io
import os
import socket
import stat
import tarfile
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest

from pytest_dockervol._archive import (
    SeedFile,
    SeedPlan,
    build_seed_plan,
    check_relative_path,
)
from pytest_dockervol._errors import SeedPathError, SeedSourceError, VolumeReadError
from pytest_dockervol._tarstream import list_files_in_tar, read_file_from_tar

MiB = 1 << 20
Member = tuple[tarfile.TarInfo, Optional[bytes]]
needs_non_root = pytest.mark.skipif(
    os.geteuid() == 0, reason="root bypasses file permissions and may chown anything"
)


def parse(plan: SeedPlan, chunk_size: int = MiB) -> list[Member]:
    """Members of the plan's tar stream, each with its content (None for non-files)."""
    data = b"".join(plan.tar_chunks(chunk_size))
    assert len(data) % tarfile.RECORDSIZE == 0
    out: list[Member] = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tf:
        for m in tf:
            f = tf.extractfile(m) if m.isreg() else None
            out.append((m, f.read() if f else None))
    for m, _ in out:
        assert not m.name.startswith(("/", "./")), m.name
    return out


def by_name(members: list[Member]) -> dict[str, Member]:
    return {m.name: (m, data) for m, data in members}


def member(name: str, data: bytes = b"", type: bytes = tarfile.REGTYPE, **attrs: Any) -> Member:
    info = tarfile.TarInfo(name)
    info.type = type
    info.size = len(data) if type == tarfile.REGTYPE else 0
    info.mode = 0o644 if type == tarfile.REGTYPE else 0o755
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, data


def write_tar(path: Path, *members: Member, mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tf:  # type: ignore[call-overload]
        for info, data in members:
            tf.addfile(info, io.BytesIO(data or b"") if info.isreg() else None)
    return path


def docker_stream(*members: Member, chunk: int = 7) -> Iterator[bytes]:
    """Mimic `get_archive`: a tar delivered in small arbitrary chunks."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data or b"") if info.isreg() else None)
    raw = buf.getvalue()
    return iter([raw[i : i + chunk] for i in range(0, len(raw), chunk)])


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
        uid=1000,
        gid=2000,
        file_mode=0o600,
        dir_mode=0o700,
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
        build_seed_plan({"a": "b"}, **kwargs)


# -- dest -------------------------------------------------------------------------------------


def test_dest_prefixes_everything_and_comes_first() -> None:
    plan = build_seed_plan({"a/b": "x"}, dest="./srv//data/", dir_mode=0o750, uid=7)
    members = parse(plan)
    assert [m.name for m, _ in members] == ["srv", "srv/data", "srv/data/a", "srv/data/a/b"]
    assert [(m.mode, m.uid) for m, _ in members[:3]] == [(0o750, 7)] * 3


@pytest.mark.parametrize("dest", ["../out", "/abs", "."])
def test_dest_is_checked(dest: str) -> None:
    with pytest.raises(SeedPathError):
        build_seed_plan({"a": "x"}, dest=dest)


# -- directory seeds -------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    (root / "sub" / "empty").mkdir(parents=True)
    (root / "sub" / "data.txt").write_text("data")
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o744)
    (root / "private").write_text("secret")
    (root / "private").chmod(0o600)
    (root / "link-to-data").symlink_to("sub/data.txt")
    (root / "sub" / "up").symlink_to("../run.sh")
    (root / "dirlink").symlink_to("sub")
    os.link(root / "sub" / "data.txt", root / "hard")
    return root


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
    members = parse(build_seed_plan(tree, file_mode=0o640, dir_mode=0o710, uid=5, gid=6))
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
    plan = build_seed_plan(archive, dest="in", uid=1, gid=2, file_mode=0o664, dir_mode=0o775)
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
    plan = build_seed_plan(path, dest="x")
    assert [m.name for m, _ in parse(plan)] == ["x"]
    assert plan.file_count == 0


# -- streaming ----------------------------------------------------------------------------


def test_large_file_streams_with_bounded_memory(tmp_path: Path) -> None:
    big = tmp_path / "sparse.img"
    size = 200 * MiB
    with big.open("wb") as f:
        f.truncate(size)
    plan = build_seed_plan({"disk/sparse.img": big})
    total, longest, first = 0, 0, b""
    tracemalloc.start()
    try:
        for chunk in plan.tar_chunks(MiB):
            first = first or chunk[:4096]
            total += len(chunk)
            longest = max(longest, len(chunk))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert longest <= MiB
    assert peak < 8 * MiB, f"peak {peak / MiB:.1f} MiB while streaming 200 MiB"
    assert total >= size + 3 * 512
    assert total % tarfile.RECORDSIZE == 0
    with tarfile.open(fileobj=io.BytesIO(first + b"\0" * 10240), mode="r|") as tf:
        infos = [tf.next(), tf.next()]
    assert infos[0] is not None
    assert infos[0].name == "disk"
    assert infos[1] is not None
    assert infos[1].size == size


def test_small_files_are_coalesced_into_full_chunks() -> None:
    plan = build_seed_plan({f"dir{i % 10}/file{i}.txt": f"content {i}" * 20 for i in range(1000)})
    chunks = list(plan.tar_chunks(MiB))
    assert len(chunks) < 20
    assert all(len(c) == MiB for c in chunks[:-1])
    assert 0 < len(chunks[-1]) <= MiB
    parsed = parse(plan, chunk_size=4096)
    assert sum(1 for m, _ in parsed if m.isreg()) == 1000 == plan.file_count


@pytest.mark.parametrize("chunk_size", [1, 512, 1000, 4096])
def test_chunk_size_does_not_change_the_stream(tree: Path, chunk_size: int) -> None:
    plan = build_seed_plan(tree)
    chunks = list(plan.tar_chunks(chunk_size))
    assert all(len(c) == chunk_size for c in chunks[:-1])
    assert b"".join(chunks) == b"".join(plan.tar_chunks())


def test_invalid_chunk_size() -> None:
    with pytest.raises(ValueError, match="chunk_size"):
        next(build_seed_plan({"a": "b"}).tar_chunks(0))


@pytest.mark.parametrize("change", ["shrink", "grow"])
def test_host_file_changing_while_streamed(tmp_path: Path, change: str) -> None:
    host = tmp_path / "f"
    host.write_bytes(b"a" * 65536)
    chunks = build_seed_plan({"f": host}).tar_chunks(4096)
    next(chunks)
    with host.open("r+b") as f:
        if change == "shrink":
            f.truncate(100)
        else:
            f.seek(0, os.SEEK_END)
            f.write(b"more")
    with pytest.raises(SeedSourceError, match="changed size"):
        list(chunks)


def test_host_file_changed_before_streaming_uses_current_content(tmp_path: Path) -> None:
    host = tmp_path / "f"
    host.write_bytes(b"old")
    plan = build_seed_plan({"f": host})
    host.write_bytes(b"new and longer")
    assert by_name(parse(plan))["f"][1] == b"new and longer"


def test_host_file_removed_before_streaming(tmp_path: Path) -> None:
    host = tmp_path / "f"
    host.write_bytes(b"x")
    plan = build_seed_plan({"f": host})
    host.unlink()
    with pytest.raises(SeedSourceError, match="cannot read seed file"):
        list(plan.tar_chunks())


# -- write_to -----------------------------------------------------------------------------------


def test_write_to_round_trip(tmp_path: Path, tree: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    build_seed_plan(tree, dest="seeded").write_to(out)
    root = out / "seeded"
    assert (root / "sub" / "data.txt").read_text() == "data"
    assert (root / "hard").read_text() == "data"
    assert stat.S_IMODE((root / "run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((root / "private").stat().st_mode) == 0o644
    assert (root / "sub" / "empty").is_dir()
    assert os.readlink(root / "link-to-data") == "sub/data.txt"
    assert (root / "dirlink").is_symlink()
    mtime = int((tree / "sub" / "data.txt").stat().st_mtime)
    assert int((root / "sub" / "data.txt").stat().st_mtime) == mtime


def test_write_to_read_only_dirs_get_children_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, int]] = []
    real_chmod = os.chmod

    def chmod(path: Any, mode: int, **kwargs: Any) -> None:
        calls.append((os.fspath(path), mode))
        real_chmod(path, mode, **kwargs)

    monkeypatch.setattr(os, "chmod", chmod)
    plan = build_seed_plan({"ro/sub/f": "x", "ro/g": "y"}, dir_mode=0o555)
    plan.write_to(tmp_path)
    monkeypatch.undo()
    assert (tmp_path / "ro" / "sub" / "f").read_text() == "x"
    assert stat.S_IMODE((tmp_path / "ro").stat().st_mode) == 0o555
    assert stat.S_IMODE((tmp_path / "ro" / "sub").stat().st_mode) == 0o555
    order = [path for path, mode in calls if mode in (0o555, 0o644)]
    assert order.index(str(tmp_path / "ro" / "sub" / "f")) < order.index(
        str(tmp_path / "ro" / "sub")
    )
    assert order.index(str(tmp_path / "ro" / "sub")) < order.index(str(tmp_path / "ro"))
    # seeding again into the now read-only tree still works and updates content
    build_seed_plan({"ro/sub/f": "new"}, dir_mode=0o555).write_to(tmp_path)
    assert (tmp_path / "ro" / "sub" / "f").read_text() == "new"
    for d in (tmp_path / "ro" / "sub", tmp_path / "ro"):
        d.chmod(0o755)


def test_write_to_overwrites_and_never_follows_symlinks(tmp_path: Path) -> None:
    out, outside = tmp_path / "out", tmp_path / "outside"
    (out / "d").mkdir(parents=True)
    outside.write_text("untouched")
    (out / "d" / "f").write_text("old content that is longer")
    (out / "d" / "f").chmod(0o444)
    (out / "via-link").symlink_to(outside)
    (out / "linkdir").symlink_to(tmp_path)
    plan = build_seed_plan({"d/f": "new", "via-link": "mine", "linkdir/x": "y"})
    plan.write_to(out)
    assert (out / "d" / "f").read_text() == "new"
    assert not (out / "via-link").is_symlink()
    assert (out / "via-link").read_text() == "mine"
    assert (out / "linkdir").is_dir()
    assert not (out / "linkdir").is_symlink()
    assert outside.read_text() == "untouched"
    assert not (tmp_path / "x").exists()


def test_write_to_refuses_to_replace_a_directory_with_a_file(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    with pytest.raises(SeedSourceError, match="is a directory"):
        build_seed_plan({"a": "x"}).write_to(tmp_path)


def test_write_to_needs_existing_directory(tmp_path: Path) -> None:
    with pytest.raises(SeedSourceError, match="not an existing directory"):
        build_seed_plan({"a": "x"}).write_to(tmp_path / "missing")


def test_write_to_archive_with_links_and_mtimes(tmp_path: Path) -> None:
    archive = write_tar(
        tmp_path / "s.tar.gz",
        member("d/f", b"content", mode=0o640, mtime=1_500_000_000),
        member("d/h", type=tarfile.LNKTYPE, linkname="d/f"),
        member("d/l", type=tarfile.SYMTYPE, linkname="f"),
        member("d", type=tarfile.DIRTYPE, mode=0o750, mtime=1_400_000_000),
        mode="w:gz",
    )
    out = tmp_path / "out"
    out.mkdir()
    build_seed_plan(archive).write_to(out)
    f = (out / "d" / "f").stat()
    assert (stat.S_IMODE(f.st_mode), f.st_mtime) == (0o640, 1_500_000_000)
    assert (out / "d" / "h").read_bytes() == b"content"
    assert (out / "d" / "l").read_bytes() == b"content"
    d = (out / "d").stat()
    assert (stat.S_IMODE(d.st_mode), d.st_mtime) == (0o750, 1_400_000_000)


def test_write_to_archive_owners(tmp_path: Path) -> None:
    archive = write_tar(tmp_path / "s.tar", member("f", b"x", uid=4321, gid=8765))
    out = tmp_path / "out"
    out.mkdir()
    build_seed_plan(archive).write_to(out)
    st = (out / "f").stat()
    if os.geteuid() == 0:  # root keeps the archive's owners, as tar does
        assert (st.st_uid, st.st_gid) == (4321, 8765)
    else:  # others silently keep their own
        assert st.st_uid == os.geteuid()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root may give files to another user")
def test_write_to_explicit_owner_as_root(tmp_path: Path) -> None:
    build_seed_plan({"d/f": "x"}, uid=1234, gid=5678, file_mode=0o4755).write_to(tmp_path)
    for path in (tmp_path / "d", tmp_path / "d" / "f"):
        st = path.stat()
        assert (st.st_uid, st.st_gid) == (1234, 5678)
    assert stat.S_IMODE((tmp_path / "d" / "f").stat().st_mode) == 0o4755  # chmod after chown


@needs_non_root
def test_write_to_explicit_owner_refused_without_root(tmp_path: Path) -> None:
    with pytest.raises(SeedSourceError, match=r"uid=0 .*only set ownership when pytest runs"):
        build_seed_plan({"f": "x"}, uid=0, gid=0).write_to(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_write_to_owner_refusal_logic_when_not_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same check with the process pretending not to be root: nothing is written."""
    fake_uid, fake_gid = os.geteuid() or 4242, os.getegid() or 4242
    monkeypatch.setattr(os, "geteuid", lambda: fake_uid)
    monkeypatch.setattr(os, "getegid", lambda: fake_gid)
    monkeypatch.setattr(os, "getgroups", lambda: [fake_gid])
    with pytest.raises(SeedSourceError, match=r"gid=0: host volumes can only set ownership"):
        build_seed_plan({"d/f": "x"}, gid=0).write_to(tmp_path)
    with pytest.raises(SeedSourceError, match=r"uid=0 gid=\d+: host volumes"):
        build_seed_plan({"d/f": "x"}, uid=0, gid=fake_gid).write_to(tmp_path)
    assert list(tmp_path.iterdir()) == []
    build_seed_plan({"d/f": "x"}, uid=fake_uid, gid=fake_gid).write_to(tmp_path)  # one's own
    assert (tmp_path / "d" / "f").stat().st_uid == fake_uid


# -- reading back get_archive streams ---------------------------------------------------------


def test_read_file_from_tar_single_file() -> None:
    payload = os.urandom(5000)
    stream = docker_stream(member("file.bin", payload))
    assert read_file_from_tar(stream, "some/dir/file.bin", volume="vol") == payload


def test_read_file_from_tar_consumes_lazily() -> None:
    pulled = 0

    def chunks() -> Iterator[bytes]:
        nonlocal pulled
        for chunk in docker_stream(member("f", b"x" * 100), member("g", b"y" * MiB), chunk=512):
            pulled += len(chunk)
            yield chunk

    assert read_file_from_tar(chunks(), "f", volume="vol") == b"x" * 100
    assert pulled < 64 * 1024  # the stream is parsed as it arrives, not joined up front


@pytest.mark.parametrize(
    ("members", "why"),
    [
        ((member("d", type=tarfile.DIRTYPE), member("d/f", b"x")), "is a directory"),
        ((member("f", type=tarfile.SYMTYPE, linkname="target"),), "is a symbolic link"),
        ((member("f", type=tarfile.FIFOTYPE),), "is not a regular file"),
        ((member("other", b"x"),), "not found"),
        ((), "not found"),
    ],
)
def test_read_file_from_tar_errors(members: tuple[Member, ...], why: str) -> None:
    name = "d" if why == "is a directory" else "f"
    with pytest.raises(VolumeReadError, match=why) as info:
        read_file_from_tar(docker_stream(*members), f"x/{name}", volume="vol")
    assert (info.value.volume, info.value.path) == ("vol", f"x/{name}")


def test_read_file_from_tar_garbage_stream() -> None:
    with pytest.raises(VolumeReadError, match="unreadable tar stream"):
        read_file_from_tar(iter([b"not a tar" * 100]), "f", volume="vol")


def docker_volume_stream() -> Iterator[bytes]:
    return docker_stream(
        member("v", type=tarfile.DIRTYPE),
        member("v/a", type=tarfile.DIRTYPE),
        member("v/a/b.txt", b"b"),
        member("v/z.txt", b"z"),
        member("v/a/link", type=tarfile.SYMTYPE, linkname="b.txt"),
        member("v/a/hard", type=tarfile.LNKTYPE, linkname="v/a/b.txt"),
        member("v/empty", type=tarfile.DIRTYPE),
    )


def test_list_files_in_tar() -> None:
    assert list_files_in_tar(docker_volume_stream()) == ["a/b.txt", "a/hard", "z.txt"]
    assert list_files_in_tar(docker_volume_stream(), strip_components=0) == [
        "v/a/b.txt",
        "v/a/hard",
        "v/z.txt",
    ]
    assert list_files_in_tar(docker_volume_stream(), strip_components=2) == ["b.txt", "hard"]
    assert list_files_in_tar(docker_stream(member("v", type=tarfile.DIRTYPE))) == []


def test_list_files_in_tar_rejects_negative_strip() -> None:
    with pytest.raises(ValueError, match="strip_components"):
        list_files_in_tar(iter([]), strip_components=-1)


def test_plan_stream_reads_back_like_a_volume() -> None:
    """What tar_chunks produces parses with the readers used on Docker's output."""
    plan = build_seed_plan({"a/b.txt": "b", "c": b"c"}, dest="v")
    assert list_files_in_tar(plan.tar_chunks(100)) == ["a/b.txt", "c"]

"""Seed plans replayed: streamed as a tar in bounded memory, or written into a directory
(pure logic, no engine needed)."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import tracemalloc
from pathlib import Path

import pytest
from tarfiles import MiB, by_name, make_tree, member, needs_non_root, parse, write_tar

from pytest_dockervol import SeedSourceError, SeedWriteError
from pytest_dockervol._seeding.sources import SeedOptions, build_seed_plan


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "tree")


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
    build_seed_plan(tree, SeedOptions(dest="seeded")).write_to(out)
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
    real_fchmod = os.fchmod

    def fchmod(fd: int, mode: int) -> None:
        calls.append((os.readlink(f"/proc/self/fd/{fd}"), mode))
        real_fchmod(fd, mode)

    monkeypatch.setattr(os, "fchmod", fchmod)
    plan = build_seed_plan({"ro/sub/f": "x", "ro/g": "y"}, SeedOptions(dir_mode=0o555))
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
    build_seed_plan({"ro/sub/f": "new"}, SeedOptions(dir_mode=0o555)).write_to(tmp_path)
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
    with pytest.raises(SeedWriteError, match="'a' is a directory"):
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
    build_seed_plan({"d/f": "x"}, SeedOptions(uid=1234, gid=5678, file_mode=0o4755)).write_to(
        tmp_path
    )
    for path in (tmp_path / "d", tmp_path / "d" / "f"):
        st = path.stat()
        assert (st.st_uid, st.st_gid) == (1234, 5678)
    assert stat.S_IMODE((tmp_path / "d" / "f").stat().st_mode) == 0o4755  # chmod after chown


@needs_non_root
def test_write_to_explicit_owner_refused_without_root(tmp_path: Path) -> None:
    with pytest.raises(SeedSourceError, match=r"uid=0 .*only set ownership when pytest runs"):
        build_seed_plan({"f": "x"}, SeedOptions(uid=0, gid=0)).write_to(tmp_path)
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
        build_seed_plan({"d/f": "x"}, SeedOptions(gid=0)).write_to(tmp_path)
    with pytest.raises(SeedSourceError, match=r"uid=0 gid=\d+: host volumes"):
        build_seed_plan({"d/f": "x"}, SeedOptions(uid=0, gid=fake_gid)).write_to(tmp_path)
    assert list(tmp_path.iterdir()) == []
    build_seed_plan({"d/f": "x"}, SeedOptions(uid=fake_uid, gid=fake_gid)).write_to(
        tmp_path
    )  # one's own
    assert (tmp_path / "d" / "f").stat().st_uid == fake_uid


def test_a_seed_directory_changed_into_a_link_after_planning_is_never_read_through(
    tmp_path: Path,
) -> None:
    """A container writing the seed directory swaps a checked parent for a link to a secret
    between the plan and the write: the plan reads nothing through it."""
    source, secret = tmp_path / "source", tmp_path / "secret"
    (source / "d").mkdir(parents=True)
    (source / "d" / "f").write_text("planned")
    secret.mkdir()
    (secret / "f").write_text("host secret")
    plan = build_seed_plan(source)
    (source / "d" / "f").unlink()
    (source / "d").rmdir()
    (source / "d").symlink_to(secret)
    with pytest.raises(SeedSourceError, match="is a symbolic link"):
        list(plan.tar_chunks())
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(SeedSourceError, match="is a symbolic link"):
        plan.write_to(out)
    assert not (out / "d" / "f").exists()

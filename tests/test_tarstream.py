"""Reading and checking tar streams: the engine's get_archive output read lazily, and the
checker every copy between volumes passes through (pure logic, no engine needed)."""

from __future__ import annotations

import os
import tarfile
from collections.abc import Iterator

import pytest
from tarfiles import Member, MiB, chunked, docker_stream, member, tar_bytes

from pytest_dockervol import VolumeCopyError, VolumeReadError
from pytest_dockervol._seeding.sources import SeedOptions, build_seed_plan
from pytest_dockervol._seeding.tarstream import (
    checked_archive,
    holds_only_root,
    list_files_in_tar,
    read_file_from_tar,
)


def make_tar(
    *members: tuple[str, bytes | None],
    fmt: int = tarfile.PAX_FORMAT,
    links: dict[str, str] | None = None,
) -> bytes:
    """A tar of files (bytes), directories (None) and hard links (named in ``links``)."""
    links = links or {}
    built: list[Member] = []
    for name, data in members:
        if data is None:
            built.append(member(name, type=tarfile.DIRTYPE))
        elif name in links:
            built.append(member(name, type=tarfile.LNKTYPE, linkname=links[name]))
        else:
            built.append(member(name, data))
    return tar_bytes(*built, fmt=fmt)


# -- reading back get_archive streams -----------------------------------------------------


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
    plan = build_seed_plan({"a/b.txt": "b", "c": b"c"}, SeedOptions(dest="v"))
    assert list_files_in_tar(plan.tar_chunks(100)) == ["a/b.txt", "c"]


def test_holds_only_root() -> None:
    assert holds_only_root(docker_stream(member("v", type=tarfile.DIRTYPE)))
    assert not holds_only_root(docker_volume_stream())


# -- checking a stream on its way from one volume to another ---------------------------------


LONG = "v/" + "/".join(["directory-with-a-long-name"] * 8) + "/file"


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
@pytest.mark.parametrize("size", [1, 7, 512, 513, 4096, 1 << 20])
def test_checked_archive_passes_bytes_through_unchanged(fmt: int, size: int) -> None:
    members: list[tuple[str, bytes | None]] = [
        ("v", None),
        ("v/a", b"x" * 1000),
        ("v/empty", b""),
        ("v/d", None),
        ("v/d/b", bytes(range(256)) * 40),
    ]
    if fmt != tarfile.USTAR_FORMAT:
        members.append((LONG, b"long"))
    data = make_tar(*members, fmt=fmt)
    assert b"".join(checked_archive(chunked(data, size), root="v")) == data


@pytest.mark.parametrize(
    ("members", "links", "why"),
    [
        ([("v", None), ("etc/passwd", b"x")], {}, "'etc/passwd', outside 'v/'"),
        ([("v/../etc/passwd", b"x")], {}, "outside"),
        ([("/v/a", b"x")], {}, "outside"),
        ([("vv/a", b"x")], {}, "outside"),
        ([("v/a", b"x"), ("v/h", b"")], {"v/h": "etc/shadow"}, "hard link 'v/h' to 'etc/shadow'"),
        ([("v/" + "x" * 200 + "/../../../etc", b"x")], {}, "outside"),
    ],
)
def test_checked_archive_refuses_members_outside_the_root(
    members: list[tuple[str, bytes | None]], links: dict[str, str], why: str
) -> None:
    data = make_tar(*members, links=links)
    with pytest.raises(VolumeCopyError, match=why) as info:
        b"".join(checked_archive(chunked(data, 100), root="v", source="src", target="dst"))
    assert str(info.value).startswith("could not copy volume src into dst: ")


def test_checked_archive_never_emits_a_refused_header() -> None:
    data = make_tar(("v/ok", b"fine"), ("bad", b"evil"))
    out = bytearray()

    def consume() -> None:
        for piece in checked_archive(chunked(data, 10), root="v"):
            out.extend(piece)

    with pytest.raises(VolumeCopyError):
        consume()
    assert b"fine" in out
    assert b"bad" not in out
    assert b"evil" not in out


def test_checked_archive_refuses_a_truncated_stream() -> None:
    data = make_tar(("v/a", b"x" * 5000))
    with pytest.raises(VolumeCopyError, match="ended early"):
        b"".join(checked_archive(chunked(data[:3000], 512), root="v"))

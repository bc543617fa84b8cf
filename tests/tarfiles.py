"""Building and parsing tars for the tests of seeds and tar streams (no engine needed)."""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest

from pytest_dockervol._seeding.plan import SeedPlan

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


def tar_bytes(*members: Member, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data or b"") if info.isreg() else None)
    return buf.getvalue()


def chunked(data: bytes, size: int) -> Iterator[bytes]:
    """A byte string delivered in pieces, as the engine's streams arrive."""
    return iter([data[i : i + size] for i in range(0, len(data), size)])


def docker_stream(*members: Member, chunk: int = 7) -> Iterator[bytes]:
    """Mimic `get_archive`: a tar delivered in small arbitrary chunks."""
    return chunked(tar_bytes(*members), chunk)


def make_tree(root: Path) -> Path:
    """A directory with files, modes, an empty dir, symlinks (to a file, a dir, up) and a
    hard link: every kind a directory seed handles."""
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

"""What inner test modules share: the test image, the engine check, a busybox ``sh`` and a
volume manifest. One copy of each: ``conftest.copy_inner_helpers`` puts this file beside
every inner module (the ``inner`` fixture does it for each pytester run), which imports it
as ``inner_helpers``; the outer tests' conftest imports ``IMAGE`` and ``is_podman`` from it.
It needs only the docker SDK: it also runs in the non-root user's virtualenv."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import docker

#: The outer run's ``image`` fixture checks it exists; the ``inner`` fixture passes it on.
IMAGE = os.environ.get("DOCKERVOL_IMAGE", "pytest-dockervol-test/busybox:latest")
MiB = 1 << 20


def is_podman(client: docker.DockerClient | None = None) -> bool:
    """Podman's Docker API (anonymous volumes carry no labels, archives no owners); without
    ``client``, the engine ``docker.from_env()`` reaches, asked once per process."""
    if client is None:
        return _this_engine_is_podman()
    components = client.version().get("Components") or []
    return any("podman" in str(c.get("Name", "")).lower() for c in components)


@functools.cache
def _this_engine_is_podman() -> bool:
    client = docker.from_env()
    try:
        return is_podman(client)
    finally:
        client.close()


def sh(
    run: Callable[..., Any], script: str, *mounts: Any, remove: bool = False, **kwargs: Any
) -> str:
    """Run ``script`` with busybox ``sh`` through ``run`` (the ``run_container`` fixture or
    ``volume_factory.run_container``) with ``mounts`` and no network (nothing needs one);
    assert it exits 0 and return its output. ``remove``: remove the container at once, for
    an exited container still holds its volumes (restore() refuses them); else the fixture
    removes it at teardown."""
    if mounts:
        kwargs["mounts"] = list(mounts)
    container = run(IMAGE, ["sh", "-c", script], network_mode="none", **kwargs)
    assert container.wait(timeout=120)["StatusCode"] == 0, container.logs().decode()
    output = str(container.logs().decode())
    if remove:
        container.remove()
    return output


def sh_in(run: Callable[..., Any], volume: Any, script: str, *, read_only: bool = True) -> str:
    """``sh`` in ``volume``, mounted at (and working in) /m; the container removed after."""
    mount = volume.mount("/m", read_only=read_only)
    return sh(run, script, mount, remove=True, working_dir="/m")


#: Every path with its type, mode, owner, mtime, size, link count, content checksum, link target.
MANIFEST = r"""
cd /m && find . | sort | while IFS= read -r f; do
  if [ -L "$f" ]; then echo "$f link $(stat -c '%u:%g' "$f") -> $(readlink "$f")"
  elif [ -d "$f" ]; then echo "$f dir $(stat -c '%a %u:%g %Y' "$f")"
  elif [ -f "$f" ]; then echo "$f file $(stat -c '%a %u:%g %s %Y %h' "$f") $(md5sum < "$f" | cut -c1-32)"
  else echo "$f other $(stat -c '%F %a %u:%g' "$f")"; fi
done
"""


def manifest(run: Callable[..., Any], volume: Any) -> list[str]:
    """``volume``'s every path as a line of MANIFEST, as busybox sees it."""
    return sh_in(run, volume, MANIFEST).splitlines()


def comparable(lines: list[str]) -> list[str]:
    """A manifest as a copy must match it. Podman's archive API gives every member the
    reading helper's owner (root) and rounds mtimes to the second: its copies keep contents,
    modes, links and layout, not owners and mtimes, which are masked there."""
    if not is_podman():
        return lines
    masked = []
    for line in lines:
        f = line.split(" ")
        hidden = {"link": [2], "dir": [3, 4], "file": [3, 5]}.get(f[1], [])
        masked.append(" ".join("?" if i in hidden else x for i, x in enumerate(f)))
    return masked


def owner(expected: str) -> str:
    """The owner a copy's file has: on Podman always the helper's (root)."""
    return "0:0" if is_podman() else expected


def labels_of(client: docker.DockerClient, volume: Any) -> dict[str, str]:
    labels: dict[str, str] = client.volumes.get(volume.name).attrs["Labels"]
    return labels


#: A tree like a database data directory, and then some (BIG_MIB: big.bin's size).
TREE = r"""
set -e
cd /m
mkdir -p base/16384 pg_wal/archive_status empty/nested/deeper private
echo 15 > PG_VERSION
head -c 8192 /dev/urandom > base/16384/1259
head -c $((BIG_MIB * 1048576)) /dev/urandom > big.bin
echo secret > private/key
chmod 600 PG_VERSION base/16384/1259 private/key
chmod 700 private base base/16384 pg_wal
chmod 4755 big.bin
mkdir setgid && chmod 2775 setgid
ln -s base/16384/1259 relative-link
ln -s ../../nowhere empty/dangling
ln -s /etc/absolute-outside absolute-link
ln private/key hard-link
dd if=/dev/zero of=sparse.bin bs=1 count=0 seek=33554432 2>/dev/null
echo end >> sparse.bin
touch -d "2001-02-03 04:05:06" PG_VERSION
chown -R 999:999 base pg_wal private PG_VERSION empty
chown 999:998 private/key
chown 999:999 .
chmod 700 .
"""


def make_tree(run: Callable[..., Any], volume: Any, big_mib: int = 1) -> Any:
    """Write TREE into ``volume``; the volume."""
    sh_in(run, volume, f"BIG_MIB={big_mib}\n{TREE}", read_only=False)
    return volume

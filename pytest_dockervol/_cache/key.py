"""What a golden-cache entry is built from, as one digest: the entry's key.

The key covers the name the tests give, their ``version``, the seed's content when it is
data (a mapping, a directory, an archive: through its checked plan), and the names, modes
and bytes of everything under ``inputs``. A callable seed is code the plugin cannot read:
it declares what it depends on through ``inputs`` and ``version``.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path

from .._errors import DockervolUsageError, short_repr
from .._seeding.plan import SeedPlan, plan_digest

#: Bump when what goes into the digest, or how an entry is built, changes.
CACHE_FORMAT = "pytest-dockervol-cache-1"
#: The longest key: it is also the entry's ``cache-name`` label, which ``ls --cache``
#: shows and ``rm --cache <key>`` matches whole.
MAX_CACHE_KEY = 200


def check_cache_key(key: object) -> str:
    """``key`` if it can name a cache entry: text a human reads back from ``ls --cache`` and
    types into ``rm --cache``, on one line.

    Raises:
        DockervolUsageError: not a string, empty, too long, or holding a control character.
    """
    __tracebackhide__ = True
    if not isinstance(key, str) or not key:
        raise DockervolUsageError(f"cache key {key!r} must be a non-empty string")
    if len(key) > MAX_CACHE_KEY:
        raise DockervolUsageError(
            f"cache key {short_repr(key)} is {len(key):,} characters long; use at most "
            f"{MAX_CACHE_KEY} (`pytest-dockervol rm --cache <key>` matches the whole key), and "
            "put what varies in version= or inputs="
        )
    control = next((char for char in key if not char.isprintable()), None)
    if control is not None:
        raise DockervolUsageError(
            f"cache key {short_repr(key)} holds the control character {control!r}; use "
            "printable text on one line (`pytest-dockervol ls --cache` shows the key)"
        )
    return key


def _check_input(given: object) -> str | os.PathLike[str]:
    __tracebackhide__ = True
    if isinstance(given, os.PathLike):
        given = os.fspath(given)
    if not isinstance(given, str):
        raise DockervolUsageError(
            f"cache input {given!r} is a {type(given).__name__}; inputs are paths (str or "
            "pathlib.Path) of the files and directories the cached volume is built from"
        )
    return given


def inputs_digest(inputs: Iterable[str | os.PathLike[str]]) -> str:
    """Names, modes, link targets and bytes of every path under ``inputs``, in a fixed
    order (times are left out: a checkout's times change, its content does not)."""
    checked = [_check_input(given) for given in inputs]  # all before any is read
    digest = hashlib.sha256()
    for given in checked:
        root = Path(given)
        try:
            top = os.lstat(root)
        except OSError as exc:
            raise DockervolUsageError(
                f"cache input {os.fspath(given)!r} cannot be read ({exc.strerror}); inputs "
                "are the files and directories the cached volume is built from"
            ) from None
        digest.update(repr(("input", os.fspath(given))).encode())
        _hash_path(digest.update, root, ".", top)
    return digest.hexdigest()


def _hash_path(update: Callable[[bytes], None], path: Path, rel: str, info: os.stat_result) -> None:
    update(repr((rel, stat.S_IFMT(info.st_mode), stat.S_IMODE(info.st_mode))).encode())
    if stat.S_ISLNK(info.st_mode):
        update(os.readlink(path).encode(errors="surrogateescape"))
    elif stat.S_ISREG(info.st_mode):
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                update(block)
    elif stat.S_ISDIR(info.st_mode):
        for name in sorted(os.listdir(path)):
            child = path / name
            _hash_path(update, child, f"{rel}/{name}", os.lstat(child))


def cache_digest(
    key: str,
    *,
    version: str,
    seed: SeedPlan | object | None,
    inputs: Iterable[str | os.PathLike[str]],
) -> str:
    """The digest that names a cache entry (its ``cache-key`` label)."""
    if isinstance(seed, SeedPlan):
        seed_part = "plan:" + plan_digest(seed)
    elif seed is None:
        seed_part = "none"
    else:  # a callable: its name, so two different builders never share an entry
        seed_part = (
            "callable:"
            + getattr(seed, "__module__", "?")
            + "."
            + getattr(seed, "__qualname__", type(seed).__qualname__)
        )
    digest = hashlib.sha256()
    for part in (CACHE_FORMAT, key, version, seed_part, inputs_digest(inputs)):
        digest.update(f"{len(part)}:{part};".encode())
    return digest.hexdigest()

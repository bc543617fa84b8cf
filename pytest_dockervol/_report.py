"""What a failing test's report shows of its volumes: what the container saw."""

from __future__ import annotations

import stat
import tarfile

from ._engine import ENGINE_ERRORS
from ._volume import Entry, Volume

MAX_ENTRIES = 60
_LISTING_ERRORS: tuple[type[BaseException], ...] = (*ENGINE_ERRORS, OSError, tarfile.TarError)


def _line(entry: Entry) -> str:
    uid = "?" if entry.uid is None else entry.uid
    gid = "?" if entry.gid is None else entry.gid
    target = f" -> {entry.link}" if entry.link else ""
    return f"{stat.filemode(entry.mode)} {uid:>5}:{gid:<5} {entry.size:>10}  {entry.path}{target}"


def describe_volume(volume: Volume, limit: int = MAX_ENTRIES) -> str:
    """A bounded ``ls -l``-like listing; never raises (a report must not fail)."""
    lines: list[str] = []
    try:
        for entry in volume.entries():
            if len(lines) == limit:
                lines.append(f"... (listing stopped at {limit} entries)")
                break
            lines.append(_line(entry))
    except _LISTING_ERRORS as exc:
        lines.append(f"(could not list the volume: {exc})")
    return "\n".join(lines) if lines else "(empty)"

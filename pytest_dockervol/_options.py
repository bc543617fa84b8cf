"""Command-line options with ini twins, validated into one Settings object."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

_PREFIX = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,19}$")

KEEP_HELP = "keep the volumes and containers this run creates and list them at the end"
PREFIX_HELP = "prefix of generated volume names (default: pdv)"
TIMEOUT_HELP = "seconds to wait for each Docker API call (default: 60)"
DIRECT_HELP = (
    "auto: seed a local engine's volumes by writing their directories directly when that is "
    "provably the same (root, local driver, verified once); never: always use the archive API"
)
REAP_HELP = (
    "hours after which resources of a run that may be alive elsewhere (another machine or "
    "pid namespace) count as abandoned and are reaped (default: 24)"
)


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("dockervol", "real Docker volumes for tests (pytest-dockervol)")
    group.addoption("--dockervol-keep", action="store_true", default=None, help=KEEP_HELP)
    group.addoption("--dockervol-prefix", default=None, metavar="PREFIX", help=PREFIX_HELP)
    group.addoption("--dockervol-timeout", default=None, metavar="SECONDS", help=TIMEOUT_HELP)
    group.addoption("--dockervol-reap-after", default=None, metavar="HOURS", help=REAP_HELP)
    group.addoption("--dockervol-direct", default=None, choices=("auto", "never"), help=DIRECT_HELP)
    parser.addini("dockervol_keep", KEEP_HELP, type="bool", default=False)
    parser.addini("dockervol_prefix", PREFIX_HELP, default="pdv")
    parser.addini("dockervol_timeout", TIMEOUT_HELP, default="60")
    parser.addini("dockervol_reap_after", REAP_HELP, default="24")
    parser.addini("dockervol_direct", DIRECT_HELP, default="auto")


@dataclass(frozen=True)
class Settings:
    keep: bool = False
    name_prefix: str = "pdv"
    api_timeout: float = 60.0
    reap_after_hours: float = 24.0
    direct: bool = True

    @classmethod
    def from_config(cls, config: pytest.Config) -> Settings:
        """Read the option, falling back to its ini twin; bad values are a UsageError."""
        keep = config.getoption("dockervol_keep")
        if keep is None:
            keep = bool(config.getini("dockervol_keep"))
        prefix = config.getoption("dockervol_prefix") or str(config.getini("dockervol_prefix"))
        if not _PREFIX.match(prefix):
            raise pytest.UsageError(
                f"dockervol_prefix {prefix!r} is not usable in volume names: use 1-20 characters "
                "from [a-zA-Z0-9_.-] starting with a letter or digit"
            )
        timeout = _number(config, "dockervol_timeout", "seconds", 3600, "--dockervol-timeout=60")
        reap_after = _number(
            config, "dockervol_reap_after", "hours", 24 * 365, "--dockervol-reap-after=24"
        )
        direct = config.getoption("dockervol_direct") or str(config.getini("dockervol_direct"))
        if direct not in ("auto", "never"):
            raise pytest.UsageError(
                f"dockervol_direct {direct!r} is not auto or never: e.g. dockervol_direct = never"
            )
        return cls(
            keep=bool(keep),
            name_prefix=prefix,
            api_timeout=timeout,
            reap_after_hours=reap_after,
            direct=direct == "auto",
        )


def _number(config: pytest.Config, name: str, unit: str, maximum: float, example: str) -> float:
    """An option or ini value that must be a positive number up to ``maximum``."""
    raw = config.getoption(name) or str(config.getini(name))
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= maximum:
        raise pytest.UsageError(
            f"{name} {raw!r} is not a number of {unit}: use a value in (0, {maximum:g}], "
            f"e.g. {example}"
        )
    return value

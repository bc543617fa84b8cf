"""Command-line options with ini twins, validated into one Settings object."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

_PREFIX = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,19}")

KEEP_HELP = "keep the volumes and containers this run creates and list them at the end"
PREFIX_HELP = "prefix of generated volume names (default: pdv)"
TIMEOUT_HELP = "seconds to wait for each Docker API call (default: 60)"
DIRECT_HELP = (
    "auto: seed a local engine's volumes by writing their directories directly when that is "
    "provably the same (root, local driver, verified once); never: always use the archive API"
)
CLONE_HELP = (
    "auto: clones and restores are copy-on-write overlays where the engine allows it "
    "(Docker's local driver, rootful; probed once), else full copies; copy: always full copies"
)
CACHE_HELP = (
    "use: volume_factory.cached() reuses golden volumes built by earlier runs; refresh: "
    "rebuild them; off: build them per run and remove them at its end"
)
CACHE_DAYS_HELP = "golden-cache entries unused for this many days are removed (default: 7)"
REAP_HELP = (
    "hours after which resources of a run without a heartbeat (an older plugin version) that "
    "may be alive elsewhere count as abandoned and are reaped (default: 24)"
)
#: The engine dates a heartbeat to the second, and a run renews it five times per timeout:
#: below this, a live run's newest beat could look older than the timeout.
MIN_HEARTBEAT_TIMEOUT = 5.0
HEARTBEAT_HELP = (
    "seconds after which a run on any machine whose heartbeat (kept in the engine, aged by "
    "the engine's clock) stopped counts as over and is reaped (at least 5; default: 60)"
)


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("dockervol", "real Docker volumes for tests (pytest-dockervol)")
    group.addoption("--dockervol-keep", action="store_true", default=None, help=KEEP_HELP)
    group.addoption("--dockervol-prefix", default=None, metavar="PREFIX", help=PREFIX_HELP)
    group.addoption("--dockervol-timeout", default=None, metavar="SECONDS", help=TIMEOUT_HELP)
    group.addoption("--dockervol-reap-after", default=None, metavar="HOURS", help=REAP_HELP)
    group.addoption(
        "--dockervol-heartbeat-timeout", default=None, metavar="SECONDS", help=HEARTBEAT_HELP
    )
    group.addoption("--dockervol-direct", default=None, choices=("auto", "never"), help=DIRECT_HELP)
    group.addoption("--dockervol-clone", default=None, choices=("auto", "copy"), help=CLONE_HELP)
    group.addoption(
        "--dockervol-cache", default=None, choices=("use", "refresh", "off"), help=CACHE_HELP
    )
    group.addoption("--dockervol-cache-days", default=None, metavar="DAYS", help=CACHE_DAYS_HELP)
    parser.addini("dockervol_keep", KEEP_HELP, type="bool", default=False)
    parser.addini("dockervol_prefix", PREFIX_HELP, default="pdv")
    parser.addini("dockervol_timeout", TIMEOUT_HELP, default="60")
    parser.addini("dockervol_reap_after", REAP_HELP, default="24")
    parser.addini("dockervol_heartbeat_timeout", HEARTBEAT_HELP, default="60")
    parser.addini("dockervol_direct", DIRECT_HELP, default="auto")
    parser.addini("dockervol_clone", CLONE_HELP, default="auto")
    parser.addini("dockervol_cache", CACHE_HELP, default="use")
    parser.addini("dockervol_cache_days", CACHE_DAYS_HELP, default="7")


@dataclass(frozen=True)
class Settings:
    keep: bool = False
    name_prefix: str = "pdv"
    api_timeout: float = 60.0
    reap_after_hours: float = 24.0
    heartbeat_timeout: float = 60.0
    direct: bool = True
    copy_on_write: bool = True
    cache: str = "use"
    cache_days: float = 7.0

    @classmethod
    def from_config(cls, config: pytest.Config) -> Settings:
        """Read the option, falling back to its ini twin; bad values are a UsageError."""
        keep = config.getoption("dockervol_keep")
        if keep is None:
            keep = bool(config.getini("dockervol_keep"))
        prefix = config.getoption("dockervol_prefix") or str(config.getini("dockervol_prefix"))
        if not _PREFIX.fullmatch(prefix):
            raise pytest.UsageError(
                f"dockervol_prefix {prefix!r} is not usable in volume names: use 1-20 characters "
                "from [a-zA-Z0-9_.-] starting with a letter or digit"
            )
        timeout = _number(config, "dockervol_timeout", "seconds", 3600, "--dockervol-timeout=60")
        reap_after = _number(
            config, "dockervol_reap_after", "hours", 24 * 365, "--dockervol-reap-after=24"
        )
        heartbeat_timeout = _number(
            config,
            "dockervol_heartbeat_timeout",
            "seconds",
            86400,
            "--dockervol-heartbeat-timeout=60",
            minimum=MIN_HEARTBEAT_TIMEOUT,
        )
        direct = _choice(config, "dockervol_direct", ("auto", "never"))
        clone = _choice(config, "dockervol_clone", ("auto", "copy"))
        cache = _choice(config, "dockervol_cache", ("use", "refresh", "off"))
        cache_days = _number(
            config, "dockervol_cache_days", "days", 3650, "--dockervol-cache-days=7"
        )
        return cls(
            keep=bool(keep),
            name_prefix=prefix,
            api_timeout=timeout,
            reap_after_hours=reap_after,
            heartbeat_timeout=heartbeat_timeout,
            direct=direct == "auto",
            copy_on_write=clone == "auto",
            cache=cache,
            cache_days=cache_days,
        )


def _number(
    config: pytest.Config,
    name: str,
    unit: str,
    maximum: float,
    example: str,
    minimum: float | None = None,
) -> float:
    """An option or ini value that must be a positive number up to ``maximum`` (and at
    least ``minimum``, when given)."""
    raw = config.getoption(name) or str(config.getini(name))
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    low_ok = value > 0 if minimum is None else value >= minimum
    if not (low_ok and value <= maximum):
        allowed = f"(0, {maximum:g}]" if minimum is None else f"[{minimum:g}, {maximum:g}]"
        raise pytest.UsageError(
            f"{name} {raw!r} is not a number of {unit}: use a value in {allowed}, e.g. {example}"
        )
    return value


def _choice(config: pytest.Config, name: str, choices: tuple[str, ...]) -> str:
    """An option or ini value that must be one of ``choices``."""
    value = config.getoption(name) or str(config.getini(name))
    if value not in choices:
        allowed = ", ".join(choices)
        raise pytest.UsageError(
            f"{name} {value!r} is not one of {allowed}: e.g. {name} = {choices[-1]}"
        )
    return value

"""``pytest-dockervol``: list and remove what earlier test runs left on the engine.

pytest-dockervol ls [--size]           what is there, per run: running, over or kept
pytest-dockervol rm                    remove the runs that are over (what a new run does)
pytest-dockervol rm --run ID [--force] remove one run's resources (kept ones included)
pytest-dockervol ls --cache            the golden cache: key, size, age, last use
pytest-dockervol rm --cache [KEY]      remove cache entries (of KEY) that no live run uses
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from .._cache.store import cache_entries, remove_entry
from .._engine.engine import Engine
from .._engine.labels import (
    LABEL_CLONE_OF,
    LABEL_KIND,
    LABEL_LAYER,
    LABEL_SNAPSHOT_OF,
    LABEL_WORKER,
    RunIdentity,
)
from .._errors import DockervolError
from .._options import MIN_HEARTBEAT_TIMEOUT
from .lease import forget_run_state, lease_state
from .reaper import (
    RunSummary,
    engine_time_for,
    group_by_run,
    list_resources,
    reap_run,
    verdict,
)

#: What `pytest-dockervol --help` says it is for (plain text: argparse prints it as is).
DESCRIPTION = "List and remove what earlier test runs left on the Docker engine."


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _sizes(engine: Engine) -> dict[str, int]:
    """Volume sizes from the engine's disk-usage report (slow on big volumes: opt-in)."""
    return {
        v["Name"]: int((v.get("UsageData") or {}).get("Size", -1))
        for v in engine.df().get("Volumes") or []
    }


def run_state(over: bool, lease: str, kept_marker: bool = False) -> str:
    """A run's state in plain words: ``over`` (the reaper and ``rm`` remove it), ``kept``
    (ended with --dockervol-keep: only ``rm --run`` removes it) or ``running``."""
    if over:
        return "over"
    return "kept" if lease == "kept" or kept_marker else "running"


def _describe(
    engine: Engine, runs: dict[str, RunSummary], me: RunIdentity, args: argparse.Namespace
) -> list[tuple[RunSummary, str, bool, str]]:
    """Each run, oldest first, with its state, whether it is over, and why."""
    now = time.time()
    engine_time = engine_time_for(engine, runs.values(), me)
    described = []
    for run in sorted(runs.values(), key=lambda r: r.newest):
        lease = lease_state(run.run_id)
        over, why = verdict(
            run,
            me,
            lease=lease,
            now=now,
            max_age=args.reap_after * 3600,
            engine_time=engine_time,
            heartbeat_timeout=args.heartbeat_timeout,
        )
        described.append((run, run_state(over, lease, run.kept_marker), over, why))
    return described


def _is_alive(run: RunSummary, state: str) -> bool:
    """Known to be running: its lease is held here, or its heartbeat beats (any machine)."""
    return state == "running" and (lease_state(run.run_id) == "alive" or run.last_beat is not None)


def cmd_ls(engine: Engine, args: argparse.Namespace) -> int:
    me = RunIdentity.new()
    runs = group_by_run(list_resources(engine))
    if not runs:
        print("no resources created by pytest-dockervol on", engine.describe())
        return 0
    sizes = _sizes(engine) if args.size else {}
    now = time.time()
    for run, state, _over, why in _describe(engine, runs, me, args):
        if state == "kept":
            why += f"; remove it with `pytest-dockervol rm --run {run.run_id}`"
        print(f"run {run.run_id}  host {run.host or '?'}  {state}: {why}")
        # Its heartbeats and kept marker are its bookkeeping, told on the line above.
        held = run.held
        if not held:
            print(
                "  nothing but its kept marker"
                if run.kept_marker
                else "  nothing yet but its heartbeat"
            )
        for r in held:
            size = sizes.get(r.name, -1)
            size_text = f"  {size / 1e6:.1f} MB" if size >= 0 and r.kind == "volume" else ""
            print(
                f"  {r.kind:9} {r.labels.get(LABEL_KIND, ''):9} "
                f"{r.labels.get(LABEL_WORKER, '?'):5} {_age(now - r.created):>6}  "
                f"{r.name[:64]}{size_text}{_relation(r.labels)}"
            )
    return 0


def _relation(labels: dict[str, str]) -> str:
    """What a volume is a copy of: ``clone of X (copy-on-write, layer L)``."""
    source = labels.get(LABEL_CLONE_OF) or labels.get(LABEL_SNAPSHOT_OF)
    if not source:
        return ""
    what = "clone" if LABEL_CLONE_OF in labels else "snapshot"
    layer = labels.get(LABEL_LAYER)
    how = f" (copy-on-write, layer {layer})" if layer else ""
    return f"  {what} of {source}{how}"


def printable(text: str) -> str:
    """``text`` as one line of a table: an entry made before keys were checked may hold a
    newline or a NUL, shown escaped as ``repr`` shows them."""
    return text if text.isprintable() else repr(text)[1:-1]


def cmd_ls_cache(engine: Engine, args: argparse.Namespace) -> int:
    entries = cache_entries(engine)
    if not entries:
        print("the golden cache is empty on", engine.describe())
        return 0
    sizes = _sizes(engine) if args.size else {}
    now = time.time()
    print(f"{'key':24} {'size':>9} {'age':>6} {'used':>6}  state     volume")
    for entry in entries:
        size = sizes.get(entry.name, -1)
        size_text = f"{size / 1e6:.1f} MB" if size >= 0 else "-"
        state = "complete" if entry.complete else "building"
        used = _age(now - entry.last_used) if entry.complete else "-"
        age = _age(now - entry.created)
        print(
            f"{printable(entry.key)[:24]:24} {size_text:>9} {age:>6} {used:>6}  "
            f"{state:9} {entry.name}"
        )
    return 0


def cmd_rm_cache(engine: Engine, args: argparse.Namespace) -> int:
    """Complete entries (of the key given) that no live run uses; building ones are left
    to their runs (a dead run's are reaped with it)."""
    failed = 0
    chosen = [
        e
        for e in cache_entries(engine)
        if e.complete and (args.key is None or args.key in (e.key, e.digest))
    ]
    for entry in chosen:
        why_not = remove_entry(engine, entry)
        if why_not is None:
            print(f"removed cache entry {entry.key!r} ({entry.name})")
        else:
            print(f"kept cache entry {entry.key!r} ({entry.name}): {why_not}")
            failed += 1
    if not chosen:
        print("no cache entry matched" if args.key else "the golden cache is empty")
    return 1 if failed else 0


def cmd_rm(engine: Engine, args: argparse.Namespace) -> int:
    me = RunIdentity.new()
    runs = group_by_run(list_resources(engine))
    failed = 0
    for run, state, over, why in _describe(engine, runs, me, args):
        chosen = run.run_id in args.run if args.run else over
        if not chosen:
            continue
        if args.run and _is_alive(run, state) and not args.force:
            print(f"run {run.run_id} is still running ({why}); add --force to remove it anyway")
            failed += 1
            continue
        result = reap_run(engine, run.run_id)
        print(f"run {run.run_id} ({state}: {why}): removed {len(result.removed)}")
        for failure in result.failed.values():
            print(f"  could not remove {failure}")
        failed += len(result.failed)
        if not result.failed:
            forget_run_state(run.run_id)
    for run_id in args.run:
        if run_id not in runs:
            forget_run_state(run_id)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    """The command; a reader that goes away early (``| head``) ends it quietly, as it ends
    other command-line tools (Python's "Note on SIGPIPE"): status 141, no traceback."""
    try:
        status = _main(argv)
        sys.stdout.flush()
    except BrokenPipeError:
        # Python would flush stdout again at exit, and fail again: point it at devnull.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    return status


def _heartbeat_timeout(text: str) -> float:
    """``--heartbeat-timeout``: the same bounds as ``dockervol_heartbeat_timeout``."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not MIN_HEARTBEAT_TIMEOUT <= value <= 86400:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of seconds in [{MIN_HEARTBEAT_TIMEOUT:g}, 86400]"
        )
    return value


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="pytest-dockervol", description=DESCRIPTION)
    parser.add_argument(
        "--reap-after",
        type=float,
        default=24.0,
        metavar="HOURS",
        help="a run that may be alive elsewhere counts as over after this idle time (default 24)",
    )
    parser.add_argument(
        "--heartbeat-timeout",
        type=_heartbeat_timeout,
        default=60.0,
        metavar="SECONDS",
        help="a run whose heartbeat stopped this long ago is over, wherever it ran "
        f"(at least {MIN_HEARTBEAT_TIMEOUT:g}; default 60)",
    )
    sub = parser.add_subparsers(dest="command")
    ls = sub.add_parser("ls", help="list resources per run")
    ls.add_argument("--size", action="store_true", help="show volume sizes (asks the engine's df)")
    ls.add_argument("--cache", action="store_true", help="list the golden cache instead")
    rm = sub.add_parser("rm", help="remove runs that are over, or the runs named")
    rm.add_argument("--run", action="append", default=[], metavar="ID", help="a run id (repeat)")
    rm.add_argument("--force", action="store_true", help="with --run: even if it is running")
    rm.add_argument(
        "--cache",
        nargs="?",
        const="",
        default=None,
        metavar="KEY",
        help="remove golden-cache entries (all, or KEY's) that no live run uses",
    )
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["ls", *(argv or [])])
    try:
        engine = Engine.connect(timeout=60)
    except DockervolError as exc:
        print(f"pytest-dockervol: {exc}", file=sys.stderr)
        return 2
    if args.command == "rm":
        if args.cache is not None:
            args.key = args.cache or None
            return cmd_rm_cache(engine, args)
        return cmd_rm(engine, args)
    if getattr(args, "cache", False):
        return cmd_ls_cache(engine, args)
    return cmd_ls(engine, args)

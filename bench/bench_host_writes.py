#!/usr/bin/env python
"""Direct seeding through descriptors against plain Python writes (issue 12).

    python bench/bench_host_writes.py [--reps 15] [--files 1000] [--size 1024]

Side by side in one run, variants interleaved and their order rotated per repetition:

* ``plain``: Python writing the same tree by path (``open(path, "wb").write``), the floor;
* ``writer``: ``build_seed_plan(seed).write_to(dir)``, the plugin's descriptor-based writer
  (every component opened with ``O_NOFOLLOW`` from its parent's descriptor, ``O_EXCL``);
* ``host seed``: ``volume_factory.host(dir).seed(seed)``, the whole public call;
* ``docker seed``: ``named.seed(seed)`` on a fresh Docker volume, written directly into its
  directory (the engine is asked once whether a container runs on it).

Each variant writes into a fresh, empty directory or volume (made outside the timed
region). Medians in ms, and each variant's ratio to ``plain`` (median of per-repetition
ratios). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import make_factory

from pytest_dockervol._seeding.sources import build_seed_plan


def plain_write(root: Path, seed: dict[str, bytes]) -> None:
    for rel, data in seed.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--size", type=int, default=1024)
    args = parser.parse_args()
    seed = {f"d{i % 10}/f{i}.bin": os.urandom(args.size) for i in range(args.files)}
    scratch = Path(tempfile.mkdtemp(prefix="bench-host-writes-"))
    factory = make_factory("bench_host_writes")
    made = 0

    def fresh() -> Path:
        nonlocal made
        made += 1
        path = scratch / f"t{made}"
        path.mkdir()
        return path

    samples: dict[str, list[float]] = {}
    variants: dict[str, Callable[[], Callable[[], object]]] = {
        "plain": lambda: (lambda root=fresh(): plain_write(root, seed)),
        "writer": lambda: (lambda root=fresh(): build_seed_plan(seed).write_to(root)),
        "host seed": lambda: (lambda volume=factory.host(fresh()): volume.seed(seed)),
        "docker seed": lambda: (lambda volume=factory.named(): volume.seed(seed)),
    }
    try:
        factory.named().seed({"warm": "up"})  # the engine check, the direct-write probe
        names = list(variants)
        for rep in range(args.reps):
            order = names[rep % len(names) :] + names[: rep % len(names)]
            for name in order:
                run = variants[name]()  # the target is made here, outside the timing
                start = time.perf_counter()
                run()
                samples.setdefault(name, []).append((time.perf_counter() - start) * 1000)
            print(f"rep {rep + 1}/{args.reps} done", file=sys.stderr)
    finally:
        factory.close()
        shutil.rmtree(scratch, ignore_errors=True)
    plain = samples["plain"]
    print(f"{args.files} files x {args.size} B, {args.reps} repetitions, medians:\n")
    print("| variant | ms | x plain |")
    print("|---|---|---|")
    for name, times in samples.items():
        ratio = statistics.median(t / p for t, p in zip(times, plain))
        print(f"| {name} | {statistics.median(times):.1f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()

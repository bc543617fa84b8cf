#!/usr/bin/env python
"""Clone of a big golden volume, copy-on-write against a full copy, and a warm golden cache.

    python bench/bench_clone.py                 # 512 MiB golden, 3 repetitions
    python bench/bench_clone.py --mib 128 --reps 5

Each repetition runs two inner pytest sessions back to back, one with
``--dockervol-clone=auto`` (copy-on-write) and one with ``--dockervol-clone=copy`` (the
full copy through the archive API), alternating which goes first. In both, a session
fixture seeds the golden (a directory of 8 MiB random files) and the test times
``golden.clone()`` plus a ``read_bytes()`` of one small file of the clone (a clone is
ready once the engine has mounted it), five times. The same sessions also time
``volume_factory.cached(key, seed=...)``: the first session of the run builds the entry
(cold), every later session finds it (warm: what a session pays for its golden). Medians;
the ratio is copy-on-write over full copy, side by side in one run. Not a test: nothing
is asserted on times. Everything the bench creates is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import uuid
from pathlib import Path

INNER = textwrap.dedent(
    r"""
    import json, os, time
    import pytest

    OUT = os.environ["BENCH_OUT"]

    def record(**row):
        with open(OUT, "a") as f:
            f.write(json.dumps(row) + "\n")

    @pytest.fixture(scope="session")
    def golden(volume_factory):
        return volume_factory.named(seed=os.environ["BENCH_SEED_DIR"])

    def test_cache(volume_factory):
        # First, as a session's golden fixture would be: before the big golden's writes.
        t = time.perf_counter()
        cached = volume_factory.cached(os.environ["BENCH_CACHE_KEY"], seed={"a.txt": "x" * 100})
        record(kind="cache", seconds=time.perf_counter() - t, name=cached.name)

    def test_clone(golden, volume_factory):
        for _ in range(5):
            t = time.perf_counter()
            clone = golden.clone()
            clone.read_bytes("tiny")
            record(kind="clone", seconds=time.perf_counter() - t, cow=clone.copy_on_write)
            clone.remove()
    """
)


def run_session(workdir: Path, mode: str, env: dict[str, str]) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--dockervol-clone={mode}",
        ],
        cwd=workdir,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--mib", type=int, default=512, help="size of the golden (512)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (3)")
    args = parser.parse_args()
    key = f"bench-clone-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="bench-clone-") as tmp:
        root = Path(tmp)
        seed = root / "seed"
        seed.mkdir()
        for i in range(max(1, args.mib // 8)):
            (seed / f"f{i}").write_bytes(os.urandom(8 << 20))
        (seed / "tiny").write_bytes(b"x")
        (root / "test_inner.py").write_text(INNER)
        out = root / "out.jsonl"
        env = {
            **os.environ,
            "BENCH_OUT": str(out),
            "BENCH_SEED_DIR": str(seed),
            "BENCH_CACHE_KEY": key,
        }
        try:
            for rep in range(args.reps):
                modes = ("auto", "copy") if rep % 2 == 0 else ("copy", "auto")
                for mode in modes:
                    print(f"rep {rep + 1}/{args.reps}: --dockervol-clone={mode}", file=sys.stderr)
                    run_session(root, mode, env)
        finally:
            subprocess.run(
                [sys.executable, "-m", "pytest_dockervol", "rm", "--cache", key],
                stdout=subprocess.DEVNULL,
                check=False,
            )
        rows = [json.loads(line) for line in out.read_text().splitlines()]
    clones = [r for r in rows if r["kind"] == "clone"]
    cow = statistics.median(r["seconds"] for r in clones if r["cow"])
    copy = statistics.median(r["seconds"] for r in clones if not r["cow"])
    cache = [r["seconds"] for r in rows if r["kind"] == "cache"]
    print(f"golden of {args.mib} MiB, {args.reps} repetitions x 5 clones per strategy (medians)")
    print(f"  full copy       {copy * 1000:8.0f} ms")
    print(f"  copy-on-write   {cow * 1000:8.0f} ms   ({cow / copy:.3f}x the full copy)")
    print(f"  cached(), cold  {cache[0] * 1000:8.0f} ms   (first session: builds the entry)")
    warm = statistics.median(cache[1:]) if len(cache) > 1 else float("nan")
    print(f"  cached(), warm  {warm * 1000:8.0f} ms   (median of {len(cache) - 1} later sessions)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Peak memory while seeding a big host directory through ``named().seed(directory)``.

Run in its own process by ``run.py``. Measures, around the seed only (after a warm-up seed
has connected to the engine and made the helper image):
  * ru_maxrss growth (high-water mark after - before; the kernel's own peak),
  * the peak of the current RSS sampled from /proc/self/statm every 2 ms, minus the RSS
    just before the seed (catches growth even below an earlier high-water mark),
  * the tracemalloc peak of Python allocations during the seed.
Prints one BENCH-JSON line.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import threading
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit_json, make_factory

PAGE = os.sysconf("SC_PAGE_SIZE")


def current_rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    args = parser.parse_args()
    total = sum(p.stat().st_size for p in Path(args.dir).rglob("*") if p.is_file())

    factory = make_factory("bench-rss")
    factory.finalize(factory.named(seed={"warm-up.txt": "x"}))  # connect, helper image, imports

    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], current_rss())
            time.sleep(0.002)

    volume = factory.named()
    rss_before = current_rss()
    max_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    tracemalloc.start()
    start = time.perf_counter()
    volume.seed(args.dir)
    elapsed = time.perf_counter() - start
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    stop.set()
    sampler.join()
    max_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    files = len(volume.files())
    factory.finalize(volume)
    factory.close()
    emit_json({
        "bytes": total,
        "files_in_volume": files,
        "seconds": elapsed,
        "maxrss_before": max_before,
        "maxrss_after": max_after,
        "maxrss_growth": max_after - max_before,
        "rss_before": rss_before,
        "sampled_peak_growth": peak[0] - rss_before,
        "tracemalloc_peak": traced_peak,
        "dockervol_run_id": factory.identity.run_id,
    })


if __name__ == "__main__":
    main()

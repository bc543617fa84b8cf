#!/usr/bin/env python
"""pytest-dockervol side-by-side benchmark (issue 5). Not part of the test suite.

    python bench/run.py                 # full run, about 10 minutes
    python bench/run.py --quick         # under 2 minutes, fewer tests and repetitions
    python bench/run.py --sections lifecycle,rss --reps 5

Every figure is measured in this one run with the variants interleaved per repetition
(order rotated), and reported as the median over repetitions; ratios are the median of the
per-repetition ratios (each taken between runs made seconds apart). See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

import docker
from _common import (
    BENCH_LABEL,
    BUSYBOX,
    EMPTY,
    REPO,
    SEED_KEYS,
    SEEDS,
    VENV,
    VENV_PY,
    cli_whole_test,
    cpu_delta,
    cpu_snapshot,
    floor_whole_test,
    fmt_ms,
    load_seed_dir,
    make_seed,
    median,
    parse_json,
    plain_tar,
    sweep,
    table,
    write_seed_dir,
)
from _inner import InnerRunner, write_inner_dir

BENCH_DIR = Path(__file__).resolve().parent
SECTIONS = ["whole", "lifecycle", "throughput", "rss", "profile"]


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def ensure_venv(install: bool) -> bool:
    """pytest-docker-tools lives in its own venv so it is never autoloaded elsewhere."""
    def importable() -> bool:
        return VENV_PY.exists() and subprocess.run(
            [str(VENV_PY), "-c", "import pytest_docker_tools"], capture_output=True
        ).returncode == 0

    if importable():
        return True
    if not install:
        return False
    log(f"creating {VENV} (--system-site-packages) with pytest-docker-tools")
    if not VENV_PY.exists():
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(VENV)],
                       check=True)
    subprocess.run([str(VENV_PY), "-m", "pip", "install", "-q", "pytest-docker-tools"],
                   check=False)
    return importable()


def paired_ratio(values: list[float], bases: list[float]) -> float:
    """Median of per-repetition ratios (both measured in the same repetition)."""
    ratios = [v / b for v, b in zip(values, bases) if b > 0 and v == v]
    return median(ratios) if ratios else float("nan")


def cell(values: list[float], bases: list[float] | None) -> str:
    text = fmt_ms(median(values))
    if bases is not None:
        text += f" ({paired_ratio(values, bases):.2f}x)"
    return text


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.run_id = uuid.uuid4().hex[:10]
        self.work = Path(f"/tmp/bench-dockervol-{self.run_id}")
        self.client = docker.from_env(timeout=600)
        self.api = self.client.api
        self.labels = {BENCH_LABEL: self.run_id}
        self.dockervol_run_ids: list[str] = []
        self.scratch_images: list[str] = []
        self.results: dict[str, Any] = {"run_id": self.run_id, "args": vars(args)}
        self.markdown: list[str] = []

    # -- setup / teardown --------------------------------------------------------------------

    def setup(self) -> None:
        for image in (BUSYBOX, EMPTY):
            try:
                self.client.images.get(image)
            except docker.errors.ImageNotFound:
                sys.exit(f"image {image} missing: run `bash .ci/build-images.sh` (no pulls)")
        self.images_before = {i.id for i in self.client.images.list(all=True)}
        self.have_pdt = ensure_venv(not self.args.no_venv_install)
        if not self.have_pdt:
            log("pytest-docker-tools unavailable: its variants are skipped")
        self.seeds_dir = self.work / "seeds"
        for name in self.args.seeds:
            count, size = SEEDS[name]
            write_seed_dir(make_seed(count, size), self.seeds_dir / SEED_KEYS[name])
        self.inner = InnerRunner(write_inner_dir(self.work / "inner"), self.run_id, self.have_pdt)
        log(f"run {self.run_id}, work dir {self.work}, pdt={'yes' if self.have_pdt else 'no'}")

    def teardown(self) -> None:
        ids = self.dockervol_run_ids + self.inner.dockervol_run_ids
        left = sweep(self.client, self.run_id, ids)
        if left:
            log("swept leftovers: " + ", ".join(left))
        self.results["leftovers_swept"] = left
        for image in set(self.scratch_images) - self.images_before:
            try:  # pytest-docker-tools' FROM-scratch seeding image, built by this run
                self.client.images.remove(image)
            except docker.errors.APIError as exc:
                log(f"could not remove pytest-docker-tools' scratch image {image}: {exc}")
        shutil.rmtree(self.work, ignore_errors=True)

    def worker(self, script: str, *extra: str, venv: bool = False) -> Any:
        python = str(VENV_PY) if venv and self.have_pdt else sys.executable
        done = subprocess.run([python, str(BENCH_DIR / script), *extra],
                              capture_output=True, text=True, cwd=REPO)
        if done.returncode:
            raise RuntimeError(f"{script} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
        return parse_json(done.stdout)

    # -- sections ----------------------------------------------------------------------------

    def whole(self) -> None:
        """Whole test: seed + one busybox container reading every file + cleanup."""
        a = self.args
        variants: list[tuple[str, str, int]] = [  # (label, kind, workers)
            ("floor (SDK, in-process)", "floor", 0),
            ("docker CLI", "cli", 0),
            ("ours (pytest)", "test_ours.py", 0),
            ("pytest-docker-tools (pytest)", "test_pdt.py", 0),
            ("floor (in pytest)", "test_floor.py", 0),
            ("ours -n 2", "test_ours.py", 2),
            ("pytest-docker-tools -n 2", "test_pdt.py", 2),
            ("floor (in pytest) -n 2", "test_floor.py", 2),
        ]
        if not a.validate:  # the raw-SDK body inside pytest, serial: checks the span method
            variants = [v for v in variants if v[0] != "floor (in pytest)"]
        if a.quick:
            variants = [v for v in variants if v[1] != "test_floor.py"]
        if not self.have_pdt:
            variants = [v for v in variants if v[1] != "test_pdt.py"]
        seeds = [s for s in a.seeds if a.whole_seeds is None or s in a.whole_seeds]
        data: dict[str, dict[str, list[float]]] = {}
        walls: dict[str, dict[str, list[float]]] = {}
        capped: set[tuple[str, str]] = set()
        for rep in range(a.reps):
            for s_index, seed_name in enumerate(seeds):
                count = SEEDS[seed_name][0]
                n = n_of(a, seed_name)
                seed_dir = self.seeds_dir / SEED_KEYS[seed_name]
                tar = plain_tar(load_seed_dir(seed_dir))
                per_test = data.setdefault(seed_name, {})
                wall = walls.setdefault(seed_name, {})

                def in_process(fn: Callable[[], None], n: int = n) -> dict[str, float]:
                    start = time.perf_counter()
                    for _ in range(n):
                        fn()
                    return {"span": time.perf_counter() - start}

                tasks: list[tuple[str, Callable[[], dict[str, float]]]] = []
                for label, kind, workers in variants:
                    if (label, seed_name) in capped:
                        continue
                    if kind == "floor":
                        tasks.append((label, lambda tar=tar, count=count: in_process(
                            lambda: floor_whole_test(self.api, self.labels, tar, count))))
                    elif kind == "cli":
                        tasks.append((label, lambda tar=tar, count=count: in_process(
                            lambda: cli_whole_test(self.run_id, tar, count))))
                    else:
                        tasks.append((label, lambda k=kind, w=workers, d=seed_dir, n=n:
                                      self.inner.run(k, d, n, w)))
                tasks.append(("ours connect", lambda d=seed_dir, n=n: self.inner.run(
                    "test_ours_connect.py", d, n)))
                tasks.append(("no plugin", lambda d=seed_dir, n=n: self.inner.run(
                    "test_empty.py", d, n)))
                shift = (rep + s_index) % len(tasks)
                for label, task in tasks[shift:] + tasks[:shift]:
                    result = task()
                    per_test.setdefault(label, []).append(result["span"] / n)
                    if "wall" in result:
                        wall.setdefault(label, []).append(result["wall"])
                    if result["span"] / n > a.slow_cap:
                        capped.add((label, seed_name))  # too slow to repeat: one sample
                fixed = wall["ours connect"][-1] - wall["no plugin"][-1]
                data.setdefault("ours fixed session cost", {}).setdefault(
                    "wall", []).append(fixed)
                log(f"whole test rep {rep + 1}/{a.reps} {seed_name}: "
                    + ", ".join(f"{k} {fmt_ms(v[-1])}" for k, v in per_test.items()
                                if k not in ("ours connect", "no plugin"))
                    + f"; ours fixed session cost {fmt_ms(fixed)}")
        self.results["whole"] = data
        self.results["whole_session_walls"] = walls
        floor = "floor (SDK, in-process)"
        floor2 = "floor (in pytest) -n 2"
        rows = []
        for label, _kind, workers in variants:
            row = [f"{label}"]
            for s in seeds:
                text = cell(data[s][label], data[s][floor])
                if workers and label != floor2 and floor2 in data[s]:
                    text += f" [{paired_ratio(data[s][label], data[s][floor2]):.2f}x floor -n 2]"
                if (label, s) in capped and len(data[s][label]) < a.reps:
                    text += f" ({len(data[s][label])} rep)"
                row.append(text)
            rows.append(row)
        ns = f"N={a.n} tests per session ({a.n_big} for 1000 files and 50 MiB)"
        self.markdown += [
            "## Whole test: seed + busybox reads every file + cleanup (per test, ms)\n",
            f"Median of {a.reps} interleaved repetitions; {ns}. Pytest rows: the session's "
            "span from the first test's start to the last test's end (all xdist workers), / N; "
            "session-scoped set-up such as our engine connection is inside it, interpreter "
            "and xdist start-up are not. In brackets: ratio to the in-process SDK floor "
            "(median of per-repetition ratios); [Nx floor -n 2]: ratio to the raw-SDK test "
            f"body under -n 2. A variant slower than {a.slow_cap:g} s per test is measured "
            "once.\n",
            table(["variant", *seeds], rows),
            "\nNot in the figures above: ours' fixed cost per session = wall of a session "
            "whose tests only connect the plugin - wall of the same session without any "
            "plugin (plugin import, lease, engine connection made by the report header, "
            "startup sweep of dead runs, watchdog process, final sweep): median "
            f"**{1000 * median(data['ours fixed session cost']['wall']):.0f} ms** over "
            f"{len(data['ours fixed session cost']['wall'])} sessions.",
            "",
        ]

    def lifecycle(self) -> None:
        a = self.args
        log("lifecycle: create + seed + remove, in one process (bench venv)")
        out = self.worker(
            "_lifecycle.py", "--seeds-dir", str(self.seeds_dir), "--run-id", self.run_id,
            "--reps", str(a.lc_reps), "--mid-reps", str(a.lc_mid_reps),
            "--big-reps", str(a.lc_big_reps),
            "--seeds", ",".join(a.seeds), venv=True,
        )
        self.scratch_images += out["scratch_images"]
        self.dockervol_run_ids.append(out["dockervol_run_id"])
        data = out["results"]
        self.results["lifecycle"] = data
        self.results["lifecycle_client_cpu"] = out["client_cpu"]
        labels = list(next(iter(data.values())))
        rows = []
        for label in labels:
            row = [label]
            for s in a.seeds:
                c = cell(data[s][label], data[s]["floor"])
                if label.startswith("ours") and "pdt" in data[s]:
                    c += f" [{paired_ratio(data[s][label], data[s]['pdt']):.2f}x pdt]"
                row.append(c)
            rows.append(row)
        self.markdown += [
            "## Volume lifecycle alone: create + seed + remove, no container (ms)\n",
            f"Median of {a.lc_reps} interleaved repetitions ({a.lc_mid_reps} for 1000 files, "
            f"{a.lc_big_reps} for 50 MiB). "
            "(Nx) = ratio to `floor`; [Nx pdt] = ratio to pytest-docker-tools. "
            "`*` = experimental, not what the plugin does.\n",
            table(["variant", *a.seeds], rows),
            "\nClient CPU (this process's user + sys) per lifecycle, ms (median): the "
            "Python side's cost, little disturbed by the shared machine's load. Counts "
            "under each cell are samples (pdt at 50 MiB is capped).\n",
            table(["variant", *a.seeds], [
                [label] + [f"{1000 * median(out['client_cpu'][s][label]):.1f} "
                           f"(n={len(out['client_cpu'][s][label])})" for s in a.seeds]
                for label in labels
            ]),
            "",
        ]

    def throughput(self) -> None:
        a = self.args
        n = a.tp_tests
        seed_dir = self.seeds_dir / SEED_KEYS["100 x 1 KiB"]
        if not seed_dir.exists():
            write_seed_dir(make_seed(100, 1024), seed_dir)
        ours = [("ours serial", "test_tp_ours.py", 0), ("ours -n 2", "test_tp_ours.py", 2)]
        floor = [("floor serial", "test_tp_floor.py", 0), ("floor -n 2", "test_tp_floor.py", 2)]
        runs = ours + ([] if a.quick else floor)
        # A-B (floor) B-A order: ours' two pairs bracket the floor's, so a drift in the
        # shared machine's load hits serial and -n 2 alike.
        order = ours + ([] if a.quick else floor) + (ours[::-1] if a.tp_reps > 1 else [])
        data: dict[str, list[dict[str, float]]] = {label: [] for label, _, _ in runs}
        cpu: dict[str, list[dict[str, float]]] = {label: [] for label, _, _ in runs}
        for step, (label, module, workers) in enumerate(order):
            log(f"throughput {step + 1}/{len(order)}: {label}, {n} tests")
            before = cpu_snapshot()
            data[label].append(self.inner.run(module, seed_dir, n, workers))
            cpu[label].append(cpu_delta(before, cpu_snapshot()))
        self.results["throughput"] = data
        self.results["throughput_cpu"] = cpu
        rows = []
        for who in ("ours", "floor"):
            if f"{who} serial" not in data:
                continue
            for measure in ("wall", "span"):
                serial = [r[measure] for r in data[f"{who} serial"]]
                par = [r[measure] for r in data[f"{who} -n 2"]]
                rows.append([who, measure, f"{median(serial):.1f}", f"{median(par):.1f}",
                             f"**{paired_ratio(serial, par):.2f}x**",
                             f"{1000 * median(serial) / n:.0f} / {1000 * median(par) / n:.0f}"])
        ceiling_rows = []
        for who in ("ours", "floor"):
            if f"{who} serial" not in cpu:
                continue
            c_serial = cpu[f"{who} serial"]
            used = median([c["client"] + c["dockerd"] + c["containerd"] for c in c_serial])
            others = median([max(c["machine_busy"] - c["client"] - c["dockerd"]
                                 - c["containerd"], 0.0) for c in cpu[f"{who} -n 2"]])
            cores = os.cpu_count() or 1
            ceiling = min(2.0, (cores - others) / used) if used > 0 else float("nan")
            ceiling_rows.append([who, f"{used:.2f}", f"{others:.2f}", f"{ceiling:.2f}x"])
        self.results["throughput_ceiling"] = ceiling_rows
        engine_rows = []
        for label, _, _ in runs:
            per_test = [(c["dockerd"] + c["containerd"]) * c["wall"] / n for c in cpu[label]]
            client = [c["client"] * c["wall"] / n for c in cpu[label]]
            engine_rows.append([label, f"{1000 * median(per_test):.0f}",
                                f"{1000 * median(client):.0f}"])
        self.markdown += [
            f"## -n 2 throughput: {n} tests, each seeding a named volume (100 x 1 KiB) and "
            "reading one file back\n",
            (f"Ours: median of {a.tp_reps} pairs run A-B, B-A around the floor's single pair. "
             if a.tp_reps > 1 else "One session each. ") + "`wall` = whole "
            "session as the user waits for it (interpreter and xdist start-up included); "
            "`span` = first test start to last test end.\n",
            table(["who", "measure", "serial (s)", "-n 2 (s)", "speed-up",
                   "ms per test serial / -n 2"], rows),
            "\nAverage busy CPU cores during each session (of "
            f"{os.cpu_count()}; `client` = the inner pytest and its xdist workers, `dockerd` "
            "(the engine behind /var/run/docker.sock) includes its re-exec'd untar/tar children; "
            "`machine` includes everyone else's "
            "work on this shared host):\n",
            cpu_table(cpu, [label for label, _, _ in runs]),
            "\nCPU milliseconds per test (engine = dockerd + containerd, which also serve "
            "other users of this engine):\n",
            table(["session", "engine CPU ms/test", "client CPU ms/test"], engine_rows),
            "\nCPU ceiling of the -n 2 speed-up at this load: cores the serial session keeps "
            "busy (client + engine) vs cores left by everyone else during the -n 2 session; "
            "ceiling = min(2, (cores - others) / serial cores):\n",
            table(["who", "serial busy cores", "others' cores during -n 2", "ceiling"],
                  ceiling_rows),
            "",
        ]

    def rss(self) -> None:
        big = self.work / "rss-1GiB"
        big.mkdir(parents=True, exist_ok=True)
        block = os.urandom(1 << 20)
        for i in range(16):  # 16 x 64 MiB of real (not sparse) incompressible data
            with open(big / f"f{i:02d}.bin", "wb") as f:
                for j in range(64):
                    f.write(i.to_bytes(4, "big") + j.to_bytes(4, "big") + block[8:])
        log("rss: seeding a 1 GiB directory (16 x 64 MiB) through named().seed(dir)")
        out = self.worker("_rss.py", "--dir", str(big))
        shutil.rmtree(big, ignore_errors=True)
        self.dockervol_run_ids.append(out["dockervol_run_id"])
        self.results["rss"] = out
        mib = 1 << 20
        self.markdown += [
            "## Peak memory while seeding a 1 GiB directory (16 x 64 MiB, random data)\n",
            table(["measure", "value"], [
                ["ru_maxrss growth (after - before)", f"{out['maxrss_growth'] / mib:.1f} MiB"],
                ["sampled current-RSS peak - RSS before",
                 f"{out['sampled_peak_growth'] / mib:.1f} MiB"],
                ["tracemalloc peak during the seed", f"{out['tracemalloc_peak'] / mib:.1f} MiB"],
                ["RSS before the seed", f"{out['rss_before'] / mib:.1f} MiB"],
                ["seed time / throughput",
                 f"{out['seconds']:.1f} s / {out['bytes'] / mib / out['seconds']:.0f} MiB/s"],
                ["files in the volume afterwards", str(out["files_in_volume"])],
            ]),
            "",
        ]

    def profile(self) -> None:
        log("profile: HTTP requests per phase, cProfile, pure-Python costs")
        out = self.worker("profile_lifecycle.py", "--emit-json", "--reps", str(self.args.prof_reps),
                          "--seeds-dir", str(self.seeds_dir), "--run-id", self.run_id,
                          "--out-dir", str(Path(self.args.out) / "pstats"))
        self.dockervol_run_ids.append(out["dockervol_run_id"])
        self.results["profile"] = {k: v for k, v in out.items() if k != "markdown"}
        self.markdown += ["## Profile of our lifecycle\n", out["markdown"], ""]

    # -- targets -----------------------------------------------------------------------------

    def targets(self) -> None:
        rows = []
        lc = self.results.get("lifecycle", {})

        def verdict(ok: bool) -> str:
            return "met" if ok else "NOT met"

        if "100 x 1 KiB" in lc:
            d = lc["100 x 1 KiB"]
            r = paired_ratio(d["ours"], d["floor"])
            rows.append(
                ["lifecycle, 100-file seed <= 1.15x floor", f"{r:.2f}x", verdict(r <= 1.15)]
            )
            if "pdt" in d:
                r = paired_ratio(d["ours"], d["pdt"])
                ref = paired_ratio(d["floor"], d["pdt"])
                text = f"{r:.2f}x (the floor itself: {ref:.2f}x"
                if "direct*" in d:
                    text += f"; direct*: {paired_ratio(d['direct*'], d['pdt']):.2f}x"
                rows.append(["lifecycle, 100-file seed <= 0.5x pytest-docker-tools",
                             text + ")", verdict(r <= 0.5)])
        if "1 x 50 MiB" in lc:
            d = lc["1 x 50 MiB"]
            r = paired_ratio(d["ours"], d["floor"])
            cpu = self.results["lifecycle_client_cpu"]["1 x 50 MiB"]
            extra = 1000 * (median(cpu["ours"]) - median(cpu["floor"]))
            rows.append(["50 MiB seed (lifecycle) <= 1.2x floor",
                         f"{r:.2f}x (client CPU +{extra:.0f} ms vs floor)", verdict(r <= 1.2)])
        if "rss" in self.results:
            g = max(self.results["rss"]["maxrss_growth"],
                    self.results["rss"]["sampled_peak_growth"]) / (1 << 20)
            rows.append(["1 GiB dir seed grows RSS < 64 MiB", f"{g:.1f} MiB", verdict(g < 64)])
        tp = self.results.get("throughput", {})
        if "ours serial" in tp:
            serial = [r["wall"] for r in tp["ours serial"]]
            r = paired_ratio(serial, [r["wall"] for r in tp["ours -n 2"]])
            r_span = paired_ratio([r["span"] for r in tp["ours serial"]],
                                  [r["span"] for r in tp["ours -n 2"]])
            text = f"{r:.2f}x (span {r_span:.2f}x)"
            if "floor serial" in tp:
                f = paired_ratio([r["wall"] for r in tp["floor serial"]],
                                 [r["wall"] for r in tp["floor -n 2"]])
                text += f"; floor {f:.2f}x"
            rows.append([f"-n 2 throughput on {self.args.tp_tests} tests >= 1.5x serial",
                         text, verdict(r >= 1.5)])
        self.results["targets"] = rows
        if rows:
            self.markdown[:0] = ["## Targets\n", table(["target", "measured", "verdict"], rows),
                                 ""]


def n_of(args: argparse.Namespace, seed_name: str) -> int:
    """Tests per inner session for a seed (fewer for the slow seeds)."""
    count, size = SEEDS[seed_name]
    return args.n_big if size >= 1 << 20 or count >= 1000 else args.n


def cpu_table(cpu: dict[str, list[dict[str, float]]], labels: list[str]) -> str:
    rows = []
    for label in labels:
        samples = cpu[label]
        others = [max(c["machine_busy"] - c["client"] - c["dockerd"] - c["containerd"], 0.0)
                  for c in samples]
        keys = ("client", "dockerd", "containerd", "machine_busy")
        rows.append([label] + [f"{median([c[k] for c in samples]):.2f}" for k in keys]
                    + [f"{median(others):.2f}"])
    return table(["session", "client", "dockerd", "containerd", "machine", "others"], rows)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="under 2 minutes: fewer tests and reps")
    p.add_argument("--reps", type=int, default=None, help="whole-test repetitions (default 3)")
    p.add_argument("--sections", default=",".join(SECTIONS),
                   help=f"comma-separated subset of {','.join(SECTIONS)}")
    p.add_argument("--seeds", default=",".join(SEEDS), help="comma-separated seed names")
    p.add_argument("--validate", action="store_true",
                   help="whole test: also run the raw-SDK body serially inside pytest")
    p.add_argument("--no-venv-install", action="store_true",
                   help=f"do not create {VENV} / pip install pytest-docker-tools")
    p.add_argument("--out", default=str(BENCH_DIR / "results"),
                   help="directory for latest.md / latest.json (default bench/results)")
    args = p.parse_args(argv)
    q = args.quick
    args.reps = args.reps or (1 if q else 3)
    args.n = 2 if q else 3  # tests per inner session (whole test)
    args.n_big = 2  # ... for the 1000-file and 50 MiB seeds
    args.lc_reps = 2 if q else 4 * args.reps  # lifecycle: 1 file, 100 files
    args.lc_mid_reps = 1 if q else 2 * args.reps  # lifecycle: 1000 files
    args.lc_big_reps = 1 if q else 3 * args.reps  # lifecycle: 50 MiB (pdt capped at 3)
    args.slow_cap = 4.0  # seconds per test above which a whole-test variant runs once
    args.tp_tests = 30 if q else 200
    args.tp_reps = 1 if q else 2
    args.whole_seeds = ["100 x 1 KiB"] if q else None
    args.prof_reps = 1 if q else 5
    args.sections = [s for s in args.sections.split(",") if s]
    args.seeds = [s.strip() for s in args.seeds.split(",") if s.strip()]
    for s in args.sections:
        if s not in SECTIONS:
            p.error(f"unknown section {s!r}")
    for s in args.seeds:
        if s not in SEEDS:
            p.error(f"unknown seed {s!r}; choose from {list(SEEDS)}")
    return args


def main() -> None:
    args = parse_args()
    bench = Bench(args)
    start = time.perf_counter()
    bench.setup()
    try:
        for section in SECTIONS:
            if section in args.sections:
                getattr(bench, section)()
    finally:
        bench.teardown()
    bench.targets()
    elapsed = time.perf_counter() - start
    engine = bench.client.version()
    header = [
        "# pytest-dockervol benchmark\n",
        f"Run {bench.run_id}: Docker {engine.get('Version')} (API {engine.get('ApiVersion')}), "
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
        f"{'--quick' if args.quick else 'full'} mode, {elapsed / 60:.1f} min. "
        f"Load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}.\n",
    ]
    text = "\n".join(header + bench.markdown)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.md").write_text(text + "\n")
    bench.results["elapsed_s"] = elapsed
    (out / "latest.json").write_text(json.dumps(bench.results, indent=1, default=str))
    log(f"wrote {out / 'latest.md'} and {out / 'latest.json'}")


if __name__ == "__main__":
    main()

"""Where does our volume lifecycle spend its time beyond the raw-SDK floor?

    python bench/profile_lifecycle.py [--reps 7] [--seeds-dir DIR] [--out-dir DIR]

For the 100-file and 1000-file seeds it runs ours (``named()`` -> ``.seed()`` ->
``finalize``) and the floor, interleaved, and reports:

1. every HTTP request to the engine, per phase (create / seed / teardown), median ms,
   with the phase's wall time split into "waiting on the engine" and "Python";
2. a cProfile of ours per phase (top functions by own time), saved as .pstats files;
3. pure-Python costs: planning the seed, producing our tar stream, vs the stdlib tarfile.

``run.py`` calls it as its last section; it can also run on its own.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    BENCH_LABEL,
    EMPTY,
    SEED_KEYS,
    SEEDS,
    cpu_delta,
    cpu_snapshot,
    emit_json,
    floor_seed,
    load_seed_dir,
    make_factory,
    make_seed,
    median,
    new_name,
    plain_tar,
    table,
    trace_http,
)

from pytest_dockervol._seeding.sources import build_seed_plan

PROFILED = ["100 x 1 KiB", "1000 x 1 KiB"]


def _phase_calls(api: Any, phases: dict[str, Any]) -> tuple[dict[str, float], dict[str, list]]:
    """Run the phases in order, each traced; return wall per phase and its calls."""
    walls, calls = {}, {}
    for phase, fn in phases.items():
        with trace_http(api) as recorded:
            start = time.perf_counter()
            fn()
            walls[phase] = time.perf_counter() - start
        calls[phase] = list(recorded)
    return walls, calls


def engine_cpu_table(
    api: Any, labels: dict[str, str], seed_of: Any, reps: int, result: dict[str, Any]
) -> str:
    """dockerd + containerd CPU per request type (min over batches: the engine is shared)."""
    from docker.types import Mount

    tar100 = plain_tar(seed_of("100 x 1 KiB"))
    tar1000 = plain_tar(seed_of("1000 x 1 KiB"))
    name = new_name("cpu")
    api.create_volume(name, labels=labels)
    helper = api.create_container(
        EMPTY, host_config=api.create_host_config(mounts=[Mount("/v", name)]),
        labels=labels, network_disabled=True,
    )["Id"]
    api.put_archive(helper, "/v", tar100)
    first = sorted(seed_of("100 x 1 KiB"))[0]

    def vol_cycle() -> None:
        n = new_name("cpu")
        api.create_volume(n, labels=labels)
        api.remove_volume(n)

    def helper_cycle() -> None:
        h = api.create_container(
            EMPTY, host_config=api.create_host_config(mounts=[Mount("/v", name)]),
            labels=labels, network_disabled=True,
        )["Id"]
        api.remove_container(h, force=True)

    def get_one() -> None:
        stream, _ = api.get_archive(helper, f"/v/{first}")
        b"".join(stream)

    ops = {
        "POST /volumes/create + DELETE /volumes/<name> (empty)": vol_cycle,
        "POST /containers/create + DELETE (helper, never started)": helper_cycle,
        "PUT archive, 100 x 1 KiB": lambda: api.put_archive(helper, "/v", tar100),
        "PUT archive, 1000 x 1 KiB": lambda: api.put_archive(helper, "/v", tar1000),
        "GET archive, one 1 KiB file": get_one,
        "GET /volumes/<name> (inspect)": lambda: api.inspect_volume(name),
        "GET /containers/json?filters=volume,label (list)": lambda: api.containers(
            all=True, filters={"volume": name, "label": "pytest-dockervol.run=x"}),
    }
    batch = 8 if reps >= 4 else 3
    rows = []
    try:
        for label, fn in ops.items():
            cpu, wall = [], []
            for _ in range(max(2, reps // 2)):
                before = cpu_snapshot()
                for _ in range(batch):
                    fn()
                d = cpu_delta(before, cpu_snapshot())
                cpu.append((d["dockerd"] + d["containerd"]) * d["wall"] / batch)
                wall.append(d["wall"] / batch)
            rows.append([label, f"{1000 * min(wall):.1f}", f"{1000 * min(cpu):.1f}"])
            result.setdefault("engine_cpu", {})[label] = {"wall_ms": 1000 * min(wall),
                                                         "cpu_ms": 1000 * min(cpu)}
    finally:
        api.remove_container(helper, force=True)
        api.remove_volume(name)
    return "### Engine CPU per request (dockerd + containerd incl. re-exec'd children; " \
        f"min over batches of {batch})\n\n" + table(["request", "wall ms", "engine CPU ms"], rows)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--seeds-dir", default=None)
    parser.add_argument("--out-dir", default=None, help="where the .pstats files go")
    parser.add_argument("--run-id", default=None)
    args = parser.parse_args(argv)

    out_dir = Path(args.out_dir or tempfile.mkdtemp(prefix="bench-dockervol-profile-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    run_id = args.run_id or new_name("profile")
    labels = {BENCH_LABEL: run_id}
    factory = make_factory("bench-profile")
    api = factory.engine.api
    factory.finalize(factory.named(seed={"warm-up": "x"}))

    def seed_of(name: str) -> dict[str, bytes]:
        if args.seeds_dir:
            return load_seed_dir(Path(args.seeds_dir) / SEED_KEYS[name])
        count, size = SEEDS[name]
        return make_seed(count, size)

    report: list[str] = []
    result: dict[str, Any] = {"http": {}, "micro": {}, "pstats": {}}

    # -- 1. HTTP requests per phase, ours vs floor ------------------------------------------
    for seed_name in PROFILED:
        seed = seed_of(seed_name)
        tar = plain_tar(seed)
        ours_walls: dict[str, list[float]] = defaultdict(list)
        ours_calls: dict[tuple[str, int, str], list[float]] = defaultdict(list)
        floor_walls: dict[str, list[float]] = defaultdict(list)
        floor_calls: dict[tuple[str, int, str], list[float]] = defaultdict(list)
        for rep in range(args.reps + 1):  # the first round is a warm-up
            box: dict[str, Any] = {}
            ours_phases = {
                "create": lambda box=box: box.__setitem__("v", factory.named()),
                "seed": lambda box=box, seed=seed: box["v"].seed(seed),
                "teardown": lambda box=box: factory.finalize(box["v"]),
            }
            floor_phases = {
                "create+seed": lambda box=box, tar=tar: box.__setitem__(
                    "n", floor_seed(api, labels, tar)),
                "teardown": lambda box=box: api.remove_volume(box["n"]),
            }
            runs = [(ours_phases, ours_walls, ours_calls), (floor_phases, floor_walls, floor_calls)]
            for phases, walls, calls in runs if rep % 2 == 0 else runs[::-1]:
                w, c = _phase_calls(api, phases)
                if rep == 0:
                    continue
                for phase, seconds in w.items():
                    walls[phase].append(seconds)
                for phase, recorded in c.items():
                    for i, (shape, seconds) in enumerate(recorded):
                        calls[(phase, i, shape)].append(seconds)

        rows = []
        for who, walls, calls in (("ours", ours_walls, ours_calls),
                                  ("floor", floor_walls, floor_calls)):
            for phase in walls:
                http = 0.0
                for (p, _i, shape), values in sorted(calls.items(), key=lambda kv: kv[0][:2]):
                    if p != phase:
                        continue
                    http += median(values)
                    rows.append([who, phase, f"`{shape}`", f"{median(values) * 1000:.1f}"])
                wall = median(walls[phase])
                rows.append([who, phase, f"**phase wall** (engine {http * 1000:.1f}, "
                             f"Python {max(wall - http, 0) * 1000:.1f})", f"**{wall * 1000:.1f}**"])
        ours_total = sum(median(v) for v in ours_walls.values())
        floor_total = sum(median(v) for v in floor_walls.values())
        n_ours = len({k[:2] for k in ours_calls})
        n_floor = len({k[:2] for k in floor_calls})
        report.append(f"### HTTP requests, {seed_name} seed (median of {args.reps})\n")
        report.append(table(["who", "phase", "request", "ms"], rows))
        report.append(
            f"\nTotal: ours {ours_total * 1000:.1f} ms in {n_ours} requests, floor "
            f"{floor_total * 1000:.1f} ms in {n_floor} requests "
            f"({ours_total / floor_total:.2f}x).\n"
        )
        result["http"][seed_name] = {
            "ours_ms": ours_total * 1000, "floor_ms": floor_total * 1000,
            "ours_requests": n_ours, "floor_requests": n_floor,
        }

    # -- 2. cProfile of ours, per phase ----------------------------------------------------
    for seed_name in PROFILED:
        seed = seed_of(seed_name)
        profilers = {p: cProfile.Profile() for p in ("create", "seed", "teardown")}
        for _ in range(args.reps):
            profilers["create"].enable()
            volume = factory.named()
            profilers["create"].disable()
            profilers["seed"].enable()
            volume.seed(seed)
            profilers["seed"].disable()
            profilers["teardown"].enable()
            factory.finalize(volume)
            profilers["teardown"].disable()
        for phase, prof in profilers.items():
            key = SEED_KEYS[seed_name]
            path = out_dir / f"ours-{key}-{phase}.pstats"
            prof.dump_stats(str(path))
            result["pstats"][f"{key}-{phase}"] = str(path)
            text = io.StringIO()
            stats = pstats.Stats(prof, stream=text)
            stats.sort_stats("tottime").print_stats(10)
            total = stats.total_tt / args.reps  # type: ignore[attr-defined]
            lines = [ln for ln in text.getvalue().splitlines() if ln.strip()]
            start = next(i for i, ln in enumerate(lines) if ln.lstrip().startswith("ncalls"))
            report.append(
                f"### cProfile: ours, {seed_name}, phase `{phase}` "
                f"({total * 1000:.1f} ms per lifecycle under the profiler; top own time, "
                f"all {args.reps} runs)\n"
            )
            report.append("```\n" + "\n".join(lines[start:start + 11]) + "\n```\n")

    # -- 3. pure-Python costs of the seed stream ---------------------------------------------
    rows = []
    for seed_name in SEEDS:
        seed = seed_of(seed_name)

        def t(fn: Any, reps: int = 5) -> float:
            values = []
            for _ in range(reps):
                start = time.perf_counter()
                fn()
                values.append(time.perf_counter() - start)
            return median(values)

        plan_s = t(lambda seed=seed: build_seed_plan(seed))
        plan = build_seed_plan(seed)
        stream_s = t(lambda plan=plan: sum(len(c) for c in plan.tar_chunks()))
        stdlib_s = t(lambda seed=seed: plain_tar(seed))
        rows.append([seed_name, f"{plan_s * 1000:.2f}", f"{stream_s * 1000:.2f}",
                     f"{stdlib_s * 1000:.2f}", f"{2 * plan_s * 1000 + stream_s * 1000:.2f}"])
        result["micro"][seed_name] = {"plan_ms": plan_s * 1000, "stream_ms": stream_s * 1000,
                                      "stdlib_tar_ms": stdlib_s * 1000}
    report.append("### Pure-Python seed costs (median of 5, ms)\n")
    report.append(table(["seed", "build_seed_plan", "consume tar_chunks()",
                         "stdlib tarfile (floor+tar)", "named(seed=): 2 plans + stream"], rows))
    report.append(f"\n.pstats files: {out_dir}\n")

    # -- 4. engine CPU per request type ---------------------------------------------------
    report.append(engine_cpu_table(api, labels, seed_of, args.reps, result))

    factory.close()
    text = "\n".join(report)
    result["markdown"] = text
    result["dockervol_run_id"] = factory.identity.run_id
    return result


if __name__ == "__main__":
    standalone = "--emit-json" not in sys.argv
    res = main([a for a in sys.argv[1:] if a != "--emit-json"])
    if standalone:
        print(res["markdown"])
    else:
        emit_json(res)

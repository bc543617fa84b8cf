"""Volume lifecycle micro-benchmark: create + seed + remove, no container run.

Run by ``run.py`` in a subprocess (under the bench venv so pytest-docker-tools is importable);
all variants run in this one process, interleaved per repetition, order rotated each time.
Prints one ``BENCH-JSON`` line: {seed: {variant: [seconds, ...]}}.

Variants
  floor          raw SDK: create_volume, create_container(empty image), put_archive of a
                 pre-built uncompressed tar, remove_container, remove_volume
  floor+tar      the same, building the tar with the stdlib tarfile inside the timing
  ours           VolumeFactory.named(), then .seed(mapping), then factory.finalize(volume)
                 (what the named_volume fixture + volume.seed() do)
  ours seed=     VolumeFactory.named(seed=mapping) + finalize (plans the seed twice)
  pdt            pytest-docker-tools' volume(initial_content=...) fixture body: hash_params,
                 volumes.create, _populate_volume (scratch-image build + gz tar), remove(True)
  direct*        EXPERIMENTAL, not in the plugin: ours.named(), inspect_volume for the
                 Mountpoint, SeedPlan.write_to(Mountpoint) on the host, finalize (no helper)
  floor direct*  EXPERIMENTAL floor of that idea: create_volume (its answer has the
                 Mountpoint), plain open()/write() of each file, remove_volume

Also records this process's CPU time (user + sys) per lifecycle: the client's share, which
is much less disturbed than wall time by other work on a shared machine. A variant whose
median exceeds --slow-cap seconds stops after --slow-reps samples (pdt with 50 MiB).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

import docker
from _common import (
    BENCH_LABEL,
    SEED_KEYS,
    SEEDS,
    emit_json,
    floor_read,
    floor_seed,
    load_seed_dir,
    make_factory,
    median,
    new_name,
    plain_tar,
    timed,
)

from pytest_dockervol._seeding.sources import build_seed_plan

try:
    import importlib

    from pytest_docker_tools.utils import hash_params

    # `pytest_docker_tools.factories.volume` is also the name of the factory function.
    pdt_volume = importlib.import_module("pytest_docker_tools.factories.volume")
except ImportError:  # the venv is missing: the pdt variant is skipped
    pdt_volume = None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds-dir", required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--mid-reps", type=int, default=8)
    parser.add_argument("--big-reps", type=int, default=5)
    parser.add_argument("--seeds", default=",".join(SEEDS))
    parser.add_argument("--slow-cap", type=float, default=1.0,
                        help="a variant slower than this (s, median) stops after --slow-reps")
    parser.add_argument("--slow-reps", type=int, default=3)
    args = parser.parse_args()

    client = docker.from_env(timeout=300)
    api = client.api
    labels = {BENCH_LABEL: args.run_id}
    factory = make_factory("bench-lifecycle")
    scratch_images: list[str] = []

    def ours(seed: dict[str, bytes]) -> None:
        volume = factory.named()
        volume.seed(seed)
        factory.finalize(volume)

    def ours_seed_kw(seed: dict[str, bytes]) -> None:
        factory.finalize(factory.named(seed=seed))

    def pdt(seed: dict[str, bytes]) -> None:
        kwargs: dict[str, Any] = {
            "labels": {**labels, "creator": "pytest-docker-tools",
                       "pytest-docker-tools.reusable": "False"},
            "initial_content": seed,
            "name": "bench-pdt-{uuid}",
        }
        kwargs["labels"]["pytest-docker-tools.signature"] = hash_params(kwargs)
        name = kwargs.pop("name").format(uuid=new_name("x")[-12:])
        seeds = kwargs.pop("initial_content")
        volume = client.volumes.create(name, **kwargs)
        try:
            pdt_volume._populate_volume(client, volume, seeds)
        finally:
            volume.remove(True)

    def direct(seed: dict[str, bytes]) -> None:
        volume = factory.named()
        mountpoint = api.inspect_volume(volume.name)["Mountpoint"]
        build_seed_plan(seed).write_to(mountpoint)
        factory.finalize(volume)

    def floor_direct(seed: dict[str, bytes]) -> None:
        name = new_name("fdirect")
        mountpoint = api.create_volume(name, labels=labels)["Mountpoint"]
        for fname, data in seed.items():
            with open(os.path.join(mountpoint, fname), "wb") as f:
                f.write(data)
        api.remove_volume(name)

    variants: dict[str, Callable[[dict[str, bytes], bytes], None]] = {
        "floor": lambda seed, tar: api.remove_volume(floor_seed(api, labels, tar)),
        "floor+tar": lambda seed, tar: api.remove_volume(floor_seed(api, labels, plain_tar(seed))),
        "ours": lambda seed, tar: ours(seed),
        "ours seed=": lambda seed, tar: ours_seed_kw(seed),
        "direct*": lambda seed, tar: direct(seed),
        "floor direct*": lambda seed, tar: floor_direct(seed),
    }
    if pdt_volume is not None:
        variants["pdt"] = lambda seed, tar: pdt(seed)
        ctx = Path(pdt_volume.__file__).parent.parent / "contexts" / "scratch"
        image, logs = client.images.build(path=str(ctx), rm=True)
        list(logs)
        scratch_images.append(image.id)

    # The experimental direct path needs a local engine whose volume directories this
    # process can write (root here). Probe it: written on the host, seen by Docker?
    probe = {"a.txt": b"direct-path-probe\n", "b.bin": os.urandom(2048)}
    volume = factory.named()
    mountpoint = api.inspect_volume(volume.name)["Mountpoint"]
    direct_ok = os.path.isdir(mountpoint) and os.access(mountpoint, os.W_OK)
    if direct_ok:
        build_seed_plan(probe).write_to(mountpoint)
        floor_read(api, labels, volume.name, 2)
        direct_ok = volume.read_bytes("b.bin") == probe["b.bin"]
    factory.finalize(volume)
    if not direct_ok:
        print(f"direct path unusable ({mountpoint}): its variants are skipped", file=sys.stderr)
        del variants["direct*"], variants["floor direct*"]

    results: dict[str, dict[str, list[float]]] = {}
    cpu: dict[str, dict[str, list[float]]] = {}
    for seed_name in args.seeds.split(","):
        seed = load_seed_dir(Path(args.seeds_dir) / SEED_KEYS[seed_name])
        tar = plain_tar(seed)
        count, size = SEEDS[seed_name]
        reps = args.big_reps if size >= 1 << 20 else args.mid_reps if count >= 1000 else args.reps
        names = list(variants)
        for name in names:  # warm-up: helper image, scratch-image build cache, imports
            variants[name](seed, tar)
        times: dict[str, list[float]] = {name: [] for name in names}
        cpu_times: dict[str, list[float]] = {name: [] for name in names}
        for rep in range(reps):
            order = names[rep % len(names):] + names[: rep % len(names)]
            for name in order:
                if len(times[name]) >= args.slow_reps and median(times[name]) > args.slow_cap:
                    continue  # pdt with 50 MiB: a few samples tell, and each costs seconds
                cpu_start = time.process_time()
                run = variants[name]
                times[name].append(timed(lambda run=run, seed=seed, tar=tar: run(seed, tar)))
                cpu_times[name].append(time.process_time() - cpu_start)
        results[seed_name] = times
        cpu[seed_name] = cpu_times
        print(f"lifecycle {seed_name}: done", file=sys.stderr, flush=True)

    factory.close()
    emit_json({"results": results, "client_cpu": cpu, "scratch_images": scratch_images,
               "dockervol_run_id": factory.identity.run_id})


if __name__ == "__main__":
    main()

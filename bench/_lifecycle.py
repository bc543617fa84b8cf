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
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

import docker  # noqa: E402
from _common import (  # noqa: E402
    BENCH_LABEL,
    SEED_KEYS,
    SEEDS,
    emit_json,
    floor_read,
    floor_seed,
    load_seed_dir,
    new_name,
    plain_tar,
    timed,
)

from pytest_dockervol._archive import build_seed_plan  # noqa: E402
from pytest_dockervol._factory import VolumeFactory  # noqa: E402
from pytest_dockervol._identity import RunIdentity  # noqa: E402
from pytest_dockervol._options import Settings  # noqa: E402

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
    parser.add_argument("--big-reps", type=int, default=5)
    parser.add_argument("--seeds", default=",".join(SEEDS))
    args = parser.parse_args()

    client = docker.from_env(timeout=300)
    api = client.api
    labels = {BENCH_LABEL: args.run_id}
    factory = VolumeFactory(
        Settings(name_prefix="bench"), RunIdentity.new("bench"), _ispytest=True
    )
    factory.current_creator = "bench-lifecycle"
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

    # Correctness probe of the experimental direct path: written on the host, seen by Docker.
    probe = {"a.txt": b"direct-path-probe\n", "b.bin": os.urandom(2048)}
    volume = factory.named()
    mountpoint = api.inspect_volume(volume.name)["Mountpoint"]
    build_seed_plan(probe).write_to(mountpoint)
    floor_read(api, labels, volume.name, 2)
    assert volume.read_bytes("b.bin") == probe["b.bin"]
    factory.finalize(volume)

    results: dict[str, dict[str, list[float]]] = {}
    for seed_name in args.seeds.split(","):
        seed = load_seed_dir(Path(args.seeds_dir) / SEED_KEYS[seed_name])
        tar = plain_tar(seed)
        reps = args.big_reps if SEEDS[seed_name][1] >= 1 << 20 else args.reps
        names = list(variants)
        for name in names:  # warm-up: helper image, scratch-image build cache, imports
            variants[name](seed, tar)
        times: dict[str, list[float]] = {name: [] for name in names}
        for rep in range(reps):
            order = names[rep % len(names):] + names[: rep % len(names)]
            for name in order:
                times[name].append(timed(lambda: variants[name](seed, tar)))
        results[seed_name] = times
        print(f"lifecycle {seed_name}: done", file=sys.stderr, flush=True)

    factory.close()
    emit_json({"results": results, "scratch_images": scratch_images,
               "dockervol_run_id": factory.identity.run_id})


if __name__ == "__main__":
    main()

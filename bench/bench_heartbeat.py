#!/usr/bin/env python
"""What a heartbeat costs the engine (issue 13), side by side in one run.

    python bench/bench_heartbeat.py [--reps 50]
    DOCKER_HOST=unix:///run/pytest-dockervol-podman.sock python bench/bench_heartbeat.py

Interleaved, per repetition:

* ``floor``: ``create_volume`` of a labelled volume, then ``remove_volume`` of the one
  before it: the least any heartbeat kept as engine objects can cost;
* ``renewal``: ``Heart.beat(renew=True)``, what the watchdog does every ``timeout / 5``
  seconds (create the beat under the run's lock, list the run's volumes, remove the older);
* ``engine clock``: ``engine_now`` (the ``Date`` of a ``/_ping`` answer), asked once by a
  reaper that finds another run's heartbeat;
* ``docker info``: the ``SystemTime`` it replaced (slow on Podman).

Medians in ms, and ``renewal`` over ``floor`` (median of per-repetition ratios). Not part
of the test suite; everything it creates carries a bench run id and is removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
import uuid
from collections.abc import Callable

import docker.errors

from pytest_dockervol._engine.engine import Engine
from pytest_dockervol._engine.labels import LABEL_RUN, RunIdentity
from pytest_dockervol._runs.heartbeat import Heart, engine_now
from pytest_dockervol._runs.reaper import reap_run


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=50)
    args = parser.parse_args()
    engine = Engine.connect_unprobed(60)  # as the watchdog connects
    where, api = engine.address, engine.api  # the floors: the SDK's own calls
    identity = RunIdentity(run_id=uuid.uuid4().hex, worker="main", name_prefix="bench")
    heart = Heart.of(identity, 60.0, "watchdog")
    floor_labels = identity.labels("named", "bench")  # not a beat: renewals leave it
    samples: dict[str, list[float]] = {
        "floor": [],
        "renewal": [],
        "engine clock": [],
        "docker info": [],
    }
    ratios: list[float] = []
    previous_floor: str | None = None
    try:
        heart.beat(engine, 0)
        for n in range(1, args.reps + 1):
            name = f"bench-{identity.short_run}-floor-{n}"

            def floor(name: str = name) -> None:
                nonlocal previous_floor
                api.create_volume(name, driver="local", labels=floor_labels)
                if previous_floor is not None:
                    api.remove_volume(previous_floor)
                previous_floor = name

            pair = {
                "floor": lambda: floor(),
                "renewal": lambda n=n: heart.beat(engine, n, renew=True),
                "engine clock": lambda: engine_now(engine),
                "docker info": lambda: api.info()["SystemTime"],
            }
            order = list(pair) if n % 2 else list(reversed(pair))
            this = {label: timed(pair[label]) for label in order}
            for label, ms in this.items():
                samples[label].append(ms)
            ratios.append(this["renewal"] / this["floor"])
    finally:
        if previous_floor is not None:
            with contextlib.suppress(docker.errors.NotFound):
                api.remove_volume(previous_floor)
        reap_run(engine, identity.run_id)
        left = api.volumes(filters={"label": f"{LABEL_RUN}={identity.run_id}"})["Volumes"]
        assert not left, f"left behind: {left}"
        engine.close()
    print(f"engine: {where}; {args.reps} repetitions, orders alternated")
    print()
    print("| step | median ms | min | max |")
    print("|---|---|---|---|")
    for label, values in samples.items():
        print(
            f"| {label} | {statistics.median(values):.1f} | {min(values):.1f} | "
            f"{max(values):.1f} |"
        )
    print()
    print(f"renewal / floor: {statistics.median(ratios):.2f}x (median of per-repetition ratios)")
    per_minute = 5 * statistics.median(samples["renewal"])
    print(f"engine time per run and minute at the default 60 s timeout: {per_minute:.0f} ms")


if __name__ == "__main__":
    main()

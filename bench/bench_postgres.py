#!/usr/bin/env python
"""Per-test cost of a PostgreSQL database, four ways, measured side by side in one run.

    python bench/bench_postgres.py                  # 5 repetitions of each, all data sizes
    python bench/bench_postgres.py --reps 3 --sizes 10k,100mb,1gib
    DOCKERVOL_POSTGRES_IMAGE=postgres:15 python bench/bench_postgres.py

  fresh    a new data volume per test: initdb, schema and data loaded by init scripts
  copy     a golden data directory built once; per test a full-copy ``clone()`` of it
           (through the archive API: what every clone was before copy-on-write)
  cow      the same golden; per test a copy-on-write ``clone()`` (an overlay volume)
  restore  one working volume; per test ``volume.restore(snapshot)`` (snapshot taken once;
           copy-on-write under ``--dockervol-clone=auto``, as a cow clone of the snapshot)

Every test then starts its own server, waits for ``pg_isready``, writes a row, reads it
back and tears down (server removed; the fresh and cloned volumes removed too). The
strategies run interleaved, in a rotated order per repetition (fresh, copy, cow, restore;
then copy, cow, restore, fresh; ...), so load from other work on the machine hits all of
them alike; figures are medians over the repetitions.

How copy and cow share one session: the clone mode (``--dockervol-clone``) belongs to the
factory that owns the *source* volume, and is fixed per factory. The inner session runs
with ``--dockervol-clone=auto`` (its ``volume_factory`` makes cow clones where the engine
allows it) and builds a second ``VolumeFactory`` in-process with the same settings except
``copy_on_write=False`` (what ``--dockervol-clone=copy`` sets). The golden is built once by
the session's factory (cow); a byte-identical twin of it, owned by the second factory, is
made once by ``cp -a`` in a container, so ``golden_copy.clone()`` is always a full copy of
the same files. Every test records ``volume.copy_on_write``, so the report shows which
clones really were overlays. The second factory skips the startup sweep (the session's
factory did it) and is closed, with a check that it removed everything, when the session
ends; a killed run's leftovers of both are reaped by the plugin's next startup sweep.

Not part of the test suite. Needs the image (``bash .ci/build-postgres-image.sh``), and
runs the tests in an inner ``pytest`` session, so the plugin is used exactly as by tests.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
DEFAULT_IMAGE = "pytest-dockervol-test/postgres:15"
STRATEGIES = ("fresh", "copy", "cow", "restore")
SIZES = {
    "10k": "10k rows made by INSERT ... SELECT generate_series (~1 MB of table data)",
    "10k-ins": "the same 10k rows from a dump of single-row INSERTs (pg_dump --inserts)",
    "100mb": "10k rows + ~100 MB (100k rows of 1 KiB, generate_series)",
    "1gib": "10k rows + ~1 GiB (1M rows of 1 KiB, generate_series)",
}

INSERTS_SQL = "".join(
    [f"INSERT INTO customers VALUES ({i}, 'alice', 'FR');\n" for i in (1,)]
    + [f"INSERT INTO customers VALUES ({i}, 'bob', 'DE');\n" for i in (2,)]
    + [f"INSERT INTO customers VALUES ({i}, 'carol', 'FR');\n" for i in (3,)]
    + [f"INSERT INTO customers VALUES ({i}, 'customer-{i}', 'US');\n" for i in range(4, 10001)]
    + ["INSERT INTO orders (customer_id, item) VALUES (1, 'book');\n"]
    + ["INSERT INTO orders (customer_id, item) VALUES (2, 'pen');\n"]
)


def blobs_sql(rows: int) -> str:
    """``rows`` rows of 1 KiB each (below the TOAST threshold: stored as is, uncompressed)."""
    return (
        "CREATE TABLE blobs (id integer PRIMARY KEY, payload text NOT NULL);\n"
        "INSERT INTO blobs SELECT g, repeat(md5(g::text), 32) "
        f"FROM generate_series(1, {rows}) AS g;\n"
    )


INNER = textwrap.dedent(
    r'''
    import dataclasses, json, os, time
    from pathlib import Path

    import pytest

    from pytest_dockervol import VolumeFactory
    from pytest_dockervol._engine.labels import RunIdentity

    IMAGE = os.environ["BENCH_PG_IMAGE"]
    REPS = int(os.environ["BENCH_PG_REPS"])
    SIZES = os.environ["BENCH_PG_SIZES"].split(",")
    RESULTS = Path(os.environ["BENCH_PG_RESULTS"])
    SEEDS = Path(os.environ["BENCH_PG_SEEDS"])  # one directory of init scripts per size
    PGDATA = "/var/lib/postgresql/data"
    ENV = {"POSTGRES_PASSWORD": "bench", "POSTGRES_DB": "app",
           "POSTGRES_INITDB_ARGS": "--wal-segsize=1"}
    STRATEGIES = ("fresh", "copy", "cow", "restore")
    ROTATIONS = [STRATEGIES[i:] + STRATEGIES[:i] for i in range(len(STRATEGIES))]

    def record(**row):
        with RESULTS.open("a") as f:
            f.write(json.dumps(row) + "\n")

    def ready(container, timeout=120.0):
        deadline = time.monotonic() + timeout
        while True:
            try:
                code, _ = container.exec_run(["pg_isready", "-q", "-h", "127.0.0.1"])
            except Exception:
                code = -1
            if code == 0:
                return
            container.reload()
            if container.status in ("exited", "dead") or time.monotonic() > deadline:
                raise AssertionError(container.logs(tail=20).decode(errors="replace"))
            time.sleep(0.05)

    def sql(container, query):
        code, out = container.exec_run(["psql", "-U", "postgres", "-d", "app", "-AtX",
                                        "-v", "ON_ERROR_STOP=1", "-c", query])
        assert code == 0, out.decode()
        return out.decode().strip()

    def server(volume_factory, data, init=None, command=None):
        mounts = [data.mount(PGDATA)]
        if init is not None:
            mounts.append(init.mount("/docker-entrypoint-initdb.d", read_only=True))
        c = volume_factory.run_container(IMAGE, command, environment=ENV, mounts=mounts,
                                         network_mode="none")
        ready(c)
        return c

    def size_mb(volume_factory, volume):
        return sum(entry.size for entry in volume.entries()) / 1e6

    @pytest.fixture(scope="session")
    def copy_factory(volume_factory):
        """A second factory of this process whose clones are always full copies: the
        session's settings with copy_on_write=False (what --dockervol-clone=copy sets)."""
        settings = dataclasses.replace(volume_factory.settings, copy_on_write=False)
        factory = VolumeFactory(settings, RunIdentity.new(settings.name_prefix),
                                reap_on_connect=False, _ispytest=True)
        assert not factory.copy_on_write.available
        yield factory
        factory.close()
        assert not factory.problems, factory.problems

    @pytest.fixture(scope="session")
    def setups(volume_factory, copy_factory):
        """Per size: init scripts, a golden data directory (and its twin owned by the
        full-copy factory), a snapshot and a work volume."""
        out = {}
        for size in SIZES:
            init = volume_factory.named(seed=SEEDS / size)
            t0 = time.perf_counter()
            golden = volume_factory.named()
            c = server(volume_factory, golden, init)
            t_ready = time.perf_counter()
            c.stop(timeout=60)
            c.remove()
            t1 = time.perf_counter()
            # The same files in a volume of the full-copy factory: its clones are full copies.
            golden_copy = copy_factory.named()
            cp = volume_factory.run_container(
                IMAGE, ["cp", "-a", "/src/.", "/dst/"], network_mode="none",
                mounts=[golden.mount("/src", read_only=True), golden_copy.mount("/dst")])
            assert cp.wait()["StatusCode"] == 0, cp.logs(tail=20).decode(errors="replace")
            cp.remove()
            t2 = time.perf_counter()
            snap = golden.snapshot()
            t3 = time.perf_counter()
            work = golden.clone()
            record(kind="once", size=size, golden_s=t1 - t0, golden_ready_s=t_ready - t0,
                   twin_s=t2 - t1, snapshot_s=t3 - t2,
                   golden_mb=size_mb(volume_factory, golden),
                   clones=volume_factory.copy_on_write.describe())
            out[size] = dict(init=init, golden=golden, golden_copy=golden_copy, snap=snap,
                             work=work)
        return out

    CASES = [(rep, size, strategy) for rep in range(REPS) for size in SIZES
             for strategy in ROTATIONS[rep % len(ROTATIONS)]]

    @pytest.mark.parametrize(("rep", "size", "strategy"), CASES,
                             ids=[f"{r}-{s}-{t}" for r, s, t in CASES])
    def test_per_test_cost(setups, volume_factory, rep, size, strategy):
        s = setups[size]
        t0 = time.perf_counter()
        if strategy == "fresh":
            data = volume_factory.named()
            t_prep = time.perf_counter()
            c = server(volume_factory, data, s["init"])
        elif strategy in ("copy", "cow"):
            data = s["golden" if strategy == "cow" else "golden_copy"].clone()
            t_prep = time.perf_counter()
            c = server(volume_factory, data)
        else:
            data = s["work"].restore(s["snap"])
            t_prep = time.perf_counter()
            c = server(volume_factory, data)
        t_ready = time.perf_counter()
        copy_on_write = data.copy_on_write
        sql(c, "INSERT INTO orders (customer_id, item) VALUES (1, 'bench')")
        assert sql(c, "SELECT count(*) FROM orders") == "3"
        t_used = time.perf_counter()
        c.remove(force=True)
        if strategy != "restore":
            data.remove()
        t_end = time.perf_counter()
        record(kind="test", rep=rep, size=size, strategy=strategy, total_s=t_end - t0,
               prep_s=t_prep - t0, start_s=t_ready - t_prep, use_s=t_used - t_ready,
               teardown_s=t_end - t_used, copy_on_write=copy_on_write)
    '''
)


def write_seeds(root: Path) -> None:
    """The init scripts of each data size: the example's, with one file added or replaced."""
    initdb = REPO / "examples" / "postgres" / "initdb"
    for size in SIZES:
        target = root / size
        target.mkdir(parents=True)
        for script in sorted(initdb.glob("*.sql")):
            (target / script.name).write_text(script.read_text())
    (root / "100mb" / "03-blobs.sql").write_text(blobs_sql(100_000))
    (root / "1gib" / "03-blobs.sql").write_text(blobs_sql(1_000_000))
    (root / "10k-ins" / "02-seed.sql").write_text(INSERTS_SQL)


def run_inner(args: argparse.Namespace, results: Path) -> int:
    with tempfile.TemporaryDirectory(prefix="bench-postgres-") as tmp:
        write_seeds(Path(tmp, "seeds"))
        Path(tmp, "test_bench_postgres.py").write_text(INNER)
        Path(tmp, "pytest.ini").write_text("[pytest]\n")
        os.environ.update(
            BENCH_PG_IMAGE=args.image,
            BENCH_PG_REPS=str(args.reps),
            BENCH_PG_SIZES=",".join(args.sizes),
            BENCH_PG_RESULTS=str(results),
            BENCH_PG_SEEDS=str(Path(tmp, "seeds")),
        )
        return pytest.main(
            [
                str(Path(tmp, "test_bench_postgres.py")),
                "-c",
                str(Path(tmp, "pytest.ini")),
                "-p",
                "no:cacheprovider",
                "-q",
                "--dockervol-prefix=bench",
                "--dockervol-clone=auto",
                "-W",
                "error::pytest_dockervol.DockervolCleanupWarning",
            ]
        )


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.0f}"


def median_of(rows: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in rows))


def report(rows: list[dict[str, Any]], image: str) -> None:
    once = {r["size"]: r for r in rows if r["kind"] == "once"}
    tests = [r for r in rows if r["kind"] == "test"]
    clones = next(iter(once.values()))["clones"] if once else "?"
    print(f"\nPostgreSQL per-test cost, image {image}, {os.cpu_count()} CPUs")
    print(f"(clones under --dockervol-clone=auto: {clones})")
    print("(median ms per test; each test: prepare data, start server, pg_isready, use, remove)")
    header = (
        f"{'data':<8} {'strategy':<8} {'per test':>8} {'prepare':>8} {'start':>8} "
        f"{'use':>8} {'teardown':>8} {'x fresh':>8} {'faster':>7}  n"
    )
    print(header)
    print("-" * len(header))
    notes: list[str] = []
    clone_lines: list[str] = []
    for size in SIZES:
        mine = [r for r in tests if r["size"] == size]
        if not mine:
            continue
        fresh = median_of([r for r in mine if r["strategy"] == "fresh"], "total_s")
        for strategy in STRATEGIES:
            sel = [r for r in mine if r["strategy"] == strategy]
            if not sel:
                continue
            total = median_of(sel, "total_s")
            print(
                f"{size:<8} {strategy:<8} {ms(total)} {ms(median_of(sel, 'prep_s'))} "
                f"{ms(median_of(sel, 'start_s'))} {ms(median_of(sel, 'use_s'))} "
                f"{ms(median_of(sel, 'teardown_s'))} {total / fresh:7.2f}x "
                f"{fresh / total:6.1f}x  {len(sel)}"
            )
            layered = sum(bool(r.get("copy_on_write")) for r in sel)
            expected = len(sel) if strategy in ("cow", "restore") else 0
            if layered != expected:
                notes.append(
                    f"  {size} {strategy}: {layered} of {len(sel)} volumes were copy-on-write "
                    f"(expected {expected})"
                )
        cow = [r for r in mine if r["strategy"] == "cow"]
        copy = [r for r in mine if r["strategy"] == "copy"]
        if cow and copy:
            t_cow, t_copy = median_of(cow, "prep_s"), median_of(copy, "prep_s")
            clone_lines.append(
                f"  {size:<7} cow {t_cow * 1000:.0f} ms vs copy {t_copy * 1000:.0f} ms: "
                f"{t_cow / t_copy:.3f}x the copy's time, {t_copy / t_cow:.0f}x faster"
            )
    if clone_lines:
        print("\nClone of the golden (the prepare step, median), copy-on-write vs full copy:")
        print("\n".join(clone_lines))
    if notes:
        print("\nNOTE: the clone modes were not as intended:")
        print("\n".join(notes))
    print("\nOnce per session (not in the per-test figures):")
    for size, r in once.items():
        print(
            f"  {size:<7} {SIZES[size]}:\n          golden built in {r['golden_s'] * 1000:.0f} ms "
            f"(ready after {r['golden_ready_s'] * 1000:.0f} ms), {r['golden_mb']:.0f} MB as tar; "
            f"its full-copy twin made (cp -a) in {r['twin_s'] * 1000:.0f} ms; snapshot taken in "
            f"{r['snapshot_s'] * 1000:.0f} ms"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--reps", type=int, default=5, help="repetitions per strategy (5)")
    parser.add_argument(
        "--sizes", default=",".join(SIZES), help="comma-separated subset of: " + ", ".join(SIZES)
    )
    parser.add_argument(
        "--image", default=os.environ.get("DOCKERVOL_POSTGRES_IMAGE", DEFAULT_IMAGE)
    )
    args = parser.parse_args()
    args.sizes = [s for s in args.sizes.split(",") if s]
    unknown = set(args.sizes) - set(SIZES)
    if unknown or args.reps < 1:
        parser.error(f"unknown sizes {sorted(unknown)} or --reps < 1")
    with tempfile.TemporaryDirectory(prefix="bench-postgres-results-") as out:
        results = Path(out, "results.jsonl")
        results.touch()
        code = run_inner(args, results)
        rows = [json.loads(line) for line in results.read_text().splitlines()]
    if code != 0:
        print(f"bench_postgres: the inner pytest run failed (exit {code})", file=sys.stderr)
        return int(code)
    report(rows, args.image)
    return 0


if __name__ == "__main__":
    sys.exit(main())

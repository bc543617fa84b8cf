#!/usr/bin/env python
"""Per-test cost of a PostgreSQL database, three ways, measured side by side in one run.

    python bench/bench_postgres.py                  # 5 repetitions of each, both data sizes
    python bench/bench_postgres.py --reps 3 --sizes 10k
    DOCKERVOL_POSTGRES_IMAGE=postgres:15 python bench/bench_postgres.py

  fresh    a new data volume per test: initdb, schema and data loaded by init scripts
  clone    a golden data directory built once; per test ``golden.clone()``
  restore  one working volume; per test ``volume.restore(snapshot)`` (snapshot taken once)

Every test then starts its own server, waits for ``pg_isready``, writes a row, reads it
back and tears down (server removed; the fresh and cloned volumes removed too). The
strategies run interleaved (fresh, clone, restore, fresh, ...), so load from other work on
the machine hits all of them alike; figures are medians over the repetitions.

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
STRATEGIES = ("fresh", "clone", "restore")
SIZES = {
    "10k": "10k rows made by INSERT ... SELECT generate_series (~1 MB of table data)",
    "10k-ins": "the same 10k rows from a dump of single-row INSERTs (pg_dump --inserts)",
    "100mb": "10k rows + ~100 MB (100k rows of 1 KiB, generate_series)",
}

INSERTS_SQL = "".join(
    [f"INSERT INTO customers VALUES ({i}, 'alice', 'FR');\n" for i in (1,)]
    + [f"INSERT INTO customers VALUES ({i}, 'bob', 'DE');\n" for i in (2,)]
    + [f"INSERT INTO customers VALUES ({i}, 'carol', 'FR');\n" for i in (3,)]
    + [f"INSERT INTO customers VALUES ({i}, 'customer-{i}', 'US');\n" for i in range(4, 10001)]
    + ["INSERT INTO orders (customer_id, item) VALUES (1, 'book');\n"]
    + ["INSERT INTO orders (customer_id, item) VALUES (2, 'pen');\n"]
)

BLOBS_SQL = """
CREATE TABLE blobs (id integer PRIMARY KEY, payload text NOT NULL);
INSERT INTO blobs SELECT g, repeat(md5(g::text), 32) FROM generate_series(1, 100000) AS g;
"""

INNER = textwrap.dedent(
    r'''
    import json, os, time
    from pathlib import Path

    import pytest

    IMAGE = os.environ["BENCH_PG_IMAGE"]
    REPS = int(os.environ["BENCH_PG_REPS"])
    SIZES = os.environ["BENCH_PG_SIZES"].split(",")
    RESULTS = Path(os.environ["BENCH_PG_RESULTS"])
    SEEDS = Path(os.environ["BENCH_PG_SEEDS"])  # one directory of init scripts per size
    PGDATA = "/var/lib/postgresql/data"
    ENV = {"POSTGRES_PASSWORD": "bench", "POSTGRES_DB": "app",
           "POSTGRES_INITDB_ARGS": "--wal-segsize=1"}
    ROTATIONS = [("fresh", "clone", "restore"), ("clone", "restore", "fresh"),
                 ("restore", "fresh", "clone")]

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
    def setups(volume_factory):
        """Per size: init scripts, a golden data directory, a snapshot and a work volume."""
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
            snap = golden.snapshot()
            t2 = time.perf_counter()
            work = golden.clone()
            record(kind="once", size=size, golden_s=t1 - t0, golden_ready_s=t_ready - t0,
                   snapshot_s=t2 - t1,
                   golden_mb=size_mb(volume_factory, golden))
            out[size] = dict(init=init, golden=golden, snap=snap, work=work)
        return out

    CASES = [(rep, size, strategy) for rep in range(REPS) for size in SIZES
             for strategy in ROTATIONS[rep % 3]]

    @pytest.mark.parametrize(("rep", "size", "strategy"), CASES,
                             ids=[f"{r}-{s}-{t}" for r, s, t in CASES])
    def test_per_test_cost(setups, volume_factory, rep, size, strategy):
        s = setups[size]
        t0 = time.perf_counter()
        if strategy == "fresh":
            data = volume_factory.named()
            t_prep = time.perf_counter()
            c = server(volume_factory, data, s["init"])
        elif strategy == "clone":
            data = s["golden"].clone()
            t_prep = time.perf_counter()
            c = server(volume_factory, data)
        else:
            data = s["work"].restore(s["snap"])
            t_prep = time.perf_counter()
            c = server(volume_factory, data)
        t_ready = time.perf_counter()
        sql(c, "INSERT INTO orders (customer_id, item) VALUES (1, 'bench')")
        assert sql(c, "SELECT count(*) FROM orders") == "3"
        t_used = time.perf_counter()
        c.remove(force=True)
        if strategy != "restore":
            data.remove()
        t_end = time.perf_counter()
        record(kind="test", rep=rep, size=size, strategy=strategy, total_s=t_end - t0,
               prep_s=t_prep - t0, start_s=t_ready - t_prep, use_s=t_used - t_ready,
               teardown_s=t_end - t_used)
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
    (root / "100mb" / "03-blobs.sql").write_text(BLOBS_SQL)
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
                "-W",
                "error::pytest_dockervol.DockervolCleanupWarning",
            ]
        )


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.0f}"


def report(rows: list[dict[str, Any]], image: str) -> None:
    once = {r["size"]: r for r in rows if r["kind"] == "once"}
    tests = [r for r in rows if r["kind"] == "test"]
    print(f"\nPostgreSQL per-test cost, image {image}, {os.cpu_count()} CPUs")
    print("(median ms per test; each test: prepare data, start server, pg_isready, use, remove)")
    header = (
        f"{'data':<8} {'strategy':<8} {'per test':>8} {'prepare':>8} {'start':>8} "
        f"{'use':>8} {'teardown':>8} {'vs fresh':>9}  n"
    )
    print(header)
    print("-" * len(header))
    for size in SIZES:
        mine = [r for r in tests if r["size"] == size]
        if not mine:
            continue
        fresh = statistics.median(r["total_s"] for r in mine if r["strategy"] == "fresh")
        for strategy in STRATEGIES:
            sel = [r for r in mine if r["strategy"] == strategy]

            def med(key: str, sel: list[dict[str, Any]] = sel) -> float:
                return statistics.median(r[key] for r in sel)

            ratio = fresh / med("total_s")
            print(
                f"{size:<8} {strategy:<8} {ms(med('total_s'))} {ms(med('prep_s'))} "
                f"{ms(med('start_s'))} {ms(med('use_s'))} {ms(med('teardown_s'))} "
                f"{ratio:8.1f}x  {len(sel)}"
            )
    print("\nOnce per session (not in the per-test figures):")
    for size, r in once.items():
        print(
            f"  {size:<7} {SIZES[size]}:\n          golden built in {r['golden_s'] * 1000:.0f} ms "
            f"(ready after {r['golden_ready_s'] * 1000:.0f} ms), {r['golden_mb']:.0f} MB as tar; "
            "snapshot taken in "
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

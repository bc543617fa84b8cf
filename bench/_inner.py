"""The inner pytest sessions: test modules written to a scratch directory and run in a
subprocess, serially or with ``-n 2``. The per-test figure of a session is its span (first
test start to last test end, over all its processes) divided by its number of tests."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from _common import BENCH_LABEL, VENV_PY

BENCH_DIR = Path(__file__).resolve().parent

_DATA = '''
"""Loaded by every inner module: the seed, the test count and the reader command."""
import os, sys
sys.path.insert(0, os.environ["BENCH_DIR"])
from _common import BENCH_LABEL, BUSYBOX, load_seed_dir, plain_tar, reader_command

SEED = load_seed_dir(os.environ["BENCH_SEED_DIR"])
COUNT = len(SEED)
FIRST = sorted(SEED)[0]
N = int(os.environ["BENCH_N"])
RUN_ID = os.environ["BENCH_RUN_ID"]
LABELS = {BENCH_LABEL: RUN_ID}
IMAGE = BUSYBOX
CMD = reader_command(COUNT)
'''

_CONFTEST = '''
"""Records when each test's protocol (setup + call + teardown) starts and ends, per process.

The span from the first start to the last end, over all processes of a session (xdist
workers included), divided by the number of tests, is the per-test figure: it excludes
interpreter start-up, collection and xdist start-up, which are pytest's, not the plugins'.
A session-scoped fixture (our engine connection) is set up inside the first test's span."""
import json, os, time
import pytest

_SPAN = {"first": None, "last": None, "tests": 0}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    start = time.time()
    try:
        return (yield)
    finally:
        end = time.time()
        _SPAN["first"] = start if _SPAN["first"] is None else _SPAN["first"]
        _SPAN["last"] = end
        _SPAN["tests"] += 1


def pytest_unconfigure(config):
    if _SPAN["tests"]:
        path = os.path.join(os.environ["BENCH_SPAN_DIR"], f"{os.getpid()}.json")
        with open(path, "w") as f:
            json.dump(_SPAN, f)
'''

MODULES = {
    # No plugin at all: the baseline of ours' fixed session cost.
    "test_empty.py": '''
        import pytest
        from _benchdata import N

        @pytest.mark.parametrize("i", range(N))
        def test_nothing(i):
            pass
    ''',
    # Ours' fixed cost per session: connect (engine version, startup sweep of dead runs,
    # lease, watchdog), amortized over the N tests of every per-test figure.
    "test_ours_connect.py": '''
        import pytest
        from _benchdata import N

        @pytest.fixture(scope="module", autouse=True)
        def _connect(volume_factory):
            volume_factory.engine

        @pytest.mark.parametrize("i", range(N))
        def test_nothing(i):
            pass
    ''',
    # Ours, as a user writes it: the named_volume fixture, seed(), run_container.
    "test_ours.py": '''
        import pytest
        from _benchdata import CMD, IMAGE, N, SEED

        @pytest.mark.parametrize("i", range(N))
        def test_whole(i, named_volume, run_container):
            named_volume.seed(SEED)
            c = run_container(IMAGE, CMD, mounts=[named_volume.mount("/data", read_only=True)],
                              network_mode="none")
            assert c.wait()["StatusCode"] == 0
    ''',
    # pytest-docker-tools: volume(initial_content=...) and a one-shot container (its
    # container() fixture is for long-running services: it fails on containers that exit).
    "test_pdt.py": '''
        import pytest
        from pytest_docker_tools import volume
        from _benchdata import CMD, IMAGE, LABELS, N, SEED

        vol = volume(initial_content=SEED, name="bench-pdt-{{uuid}}", labels=dict(LABELS))

        @pytest.mark.parametrize("i", range(N))
        def test_whole(i, vol, docker_client):
            c = docker_client.containers.run(
                IMAGE, CMD, volumes={vol.name: {"bind": "/data", "mode": "ro"}},
                detach=True, labels=LABELS, network_mode="none",
            )
            try:
                assert c.wait()["StatusCode"] == 0
            finally:
                c.remove(force=True)
    ''',
    # The raw SDK floor inside pytest (for -n 2: what the engine itself allows in parallel).
    "test_floor.py": '''
        import docker, pytest
        from _benchdata import COUNT, LABELS, N, SEED, plain_tar
        from _common import floor_whole_test

        API = docker.from_env(timeout=300).api
        TAR = plain_tar(SEED)

        @pytest.mark.parametrize("i", range(N))
        def test_whole(i):
            floor_whole_test(API, LABELS, TAR, COUNT)
    ''',
    # Throughput: each test seeds a named_volume and reads one file back.
    "test_tp_ours.py": '''
        import pytest
        from _benchdata import FIRST, N, SEED

        @pytest.mark.parametrize("i", range(N))
        def test_tp(i, named_volume):
            named_volume.seed(SEED)
            assert named_volume.read_bytes(FIRST) == SEED[FIRST]
    ''',
    "test_tp_floor.py": '''
        import docker, pytest
        from _benchdata import FIRST, LABELS, N, SEED, plain_tar
        from _common import floor_seed_and_read

        API = docker.from_env(timeout=300).api
        TAR = plain_tar(SEED)

        @pytest.mark.parametrize("i", range(N))
        def test_tp(i):
            assert floor_seed_and_read(API, LABELS, TAR, FIRST) == SEED[FIRST]
    ''',
}

PLUGINS = {
    "test_empty.py": [],
    "test_ours.py": ["pytest_dockervol.plugin"],
    "test_ours_connect.py": ["pytest_dockervol.plugin"],
    "test_pdt.py": ["pytest_docker_tools.plugin"],
    "test_floor.py": [],
    "test_tp_ours.py": ["pytest_dockervol.plugin"],
    "test_tp_floor.py": [],
}

_RUN_ID = re.compile(r"dockervol: run ([0-9a-f]{32})")
_PASSED = re.compile(r"(\d+) passed")


def write_inner_dir(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "pytest.ini").write_text("[pytest]\n")  # keep the repo's pyproject out
    (directory / "_benchdata.py").write_text(_DATA.lstrip())
    (directory / "conftest.py").write_text(_CONFTEST.lstrip())
    for name, body in MODULES.items():
        (directory / name).write_text(textwrap.dedent(body).lstrip())
    return directory


class InnerRunner:
    def __init__(self, directory: Path, run_id: str, have_pdt: bool) -> None:
        self.directory = directory
        self.run_id = run_id
        self.python = str(VENV_PY) if have_pdt else sys.executable
        self.have_pdt = have_pdt
        self.dockervol_run_ids: list[str] = []

    def run(self, module: str, seed_dir: Path, n: int, workers: int = 0) -> dict[str, float]:
        """One inner session, which must pass all n tests: its wall seconds and its span
        (first test start to last test end, all processes), see the conftest above."""
        span_dir = Path(tempfile.mkdtemp(prefix="span-", dir=self.directory))
        plugins = [p for p in PLUGINS[module] if self.have_pdt or "docker_tools" not in p]
        args = [self.python, "-m", "pytest", module, "-p", "no:cacheprovider"]
        for plugin in plugins:
            args += ["-p", plugin]
        if workers:
            args += ["-p", "xdist.plugin", "-n", str(workers)]
        args += ["--dockervol-prefix", "bench"] if "pytest_dockervol.plugin" in plugins else []
        env = {
            **os.environ,
            # Only the plugins named with -p: same set for every variant and its baseline.
            "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
            "BENCH_DIR": str(BENCH_DIR),
            "BENCH_SEED_DIR": str(seed_dir),
            "BENCH_N": str(n),
            "BENCH_RUN_ID": self.run_id,
            "BENCH_SPAN_DIR": str(span_dir),
        }
        start = time.perf_counter()
        done = subprocess.run(
            args, cwd=self.directory, env=env, capture_output=True, text=True, check=False
        )
        wall = time.perf_counter() - start
        match = _RUN_ID.search(done.stdout)
        if match:
            self.dockervol_run_ids.append(match.group(1))
        passed = _PASSED.search(done.stdout)
        if done.returncode != 0 or not passed or int(passed.group(1)) != n:
            raise RuntimeError(
                f"inner run {module} (n={n}, -n {workers}) failed:\n"
                + done.stdout[-4000:] + done.stderr[-2000:]
            )
        spans = [json.loads(p.read_text()) for p in span_dir.glob("*.json")]
        shutil.rmtree(span_dir, ignore_errors=True)
        if sum(sp["tests"] for sp in spans) != n:
            raise RuntimeError(f"inner run {module}: span records for {spans} != {n} tests")
        span = max(sp["last"] for sp in spans) - min(sp["first"] for sp in spans)
        return {"wall": wall, "span": span, "workers_used": len(spans)}


__all__ = ["BENCH_LABEL", "InnerRunner", "write_inner_dir"]

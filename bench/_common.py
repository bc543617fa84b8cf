"""Shared pieces of the benchmark: seeds, the raw-SDK floor, an HTTP tracer, cleanup, stats.

Nothing here is imported by the plugin or its test suite. Every Docker object the bench
creates itself carries the label ``bench-dockervol=<bench run id>`` and a ``bench-`` name
prefix; objects created by pytest-dockervol carry its own run labels (prefix ``bench``).
"""

from __future__ import annotations

import io
import json
import os
import re
import statistics
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BUSYBOX = os.environ.get("DOCKERVOL_IMAGE", "pytest-dockervol-test/busybox:latest")
EMPTY = "pytest-dockervol-test/empty:latest"
BENCH_LABEL = "bench-dockervol"
VENV = Path(os.environ.get("BENCH_VENV", "/tmp/bench-venv"))
VENV_PY = VENV / "bin" / "python"
REPO = Path(__file__).resolve().parent.parent

# name -> (file count, bytes per file)
SEEDS: dict[str, tuple[int, int]] = {
    "1 file": (1, 1024),
    "100 x 1 KiB": (100, 1024),
    "1000 x 1 KiB": (1000, 1024),
    "1 x 50 MiB": (1, 50 << 20),
}
SEED_KEYS = {"1 file": "s1", "100 x 1 KiB": "s100", "1000 x 1 KiB": "s1000", "1 x 50 MiB": "s50m"}


def reader_command(count: int) -> list[str]:
    """The busybox command of the whole-test workload: count the files, then read them all.

    Every variant runs it with no network (``network_mode="none"``): the reader needs none,
    and a bridge endpoint would only add noise (and fails when docker0 is missing)."""
    return [
        "sh",
        "-c",
        f"test $(find /data -type f | wc -l) -eq {count} "
        "&& find /data -type f -exec cat {} + > /dev/null",
    ]


# -- seeds -------------------------------------------------------------------------------


def make_seed(count: int, size: int, salt: int = 0) -> dict[str, bytes]:
    """Deterministic pseudo-random contents (incompressible, so gzip gets no free ride)."""
    import random

    rng = random.Random(1000 * count + size + salt)
    if size >= 1 << 20:  # big: one random MiB repeated with a varying prefix, cheap to make
        block = rng.randbytes(1 << 20)
        pieces = [i.to_bytes(8, "big") + block[8:] for i in range(size >> 20)]
        return {f"f{i:04d}.bin": b"".join(pieces) for i in range(count)}
    return {f"f{i:04d}.bin": rng.randbytes(size) for i in range(count)}


def write_seed_dir(seed: dict[str, bytes], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in seed.items():
        (directory / name).write_bytes(data)
    return directory


def load_seed_dir(directory: str | os.PathLike[str]) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(Path(directory).iterdir()) if p.is_file()}


def plain_tar(seed: dict[str, bytes]) -> bytes:
    """An uncompressed tar of the seed, as the floor sends it (built with the stdlib)."""
    buf = io.BytesIO()
    now = int(time.time())
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in seed.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, now
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# -- our factory, used directly (no pytest) --------------------------------------------------


def make_factory(creator: str) -> Any:
    """A VolumeFactory as the plugin builds one, names prefixed ``bench``.

    Connecting normally also reaps *other* runs that died (a startup sweep). A benchmark
    has no business sweeping a shared engine, and the sweep runs once per process outside
    every timed region anyway, so it is turned off here; all else is the plugin's own code.
    """
    from pytest_dockervol import VolumeFactory
    from pytest_dockervol._engine.labels import RunIdentity
    from pytest_dockervol._options import Settings

    factory = VolumeFactory(
        Settings(name_prefix="bench"),
        RunIdentity.new("bench"),
        reap_on_connect=False,
        _ispytest=True,
    )
    factory.creator = creator
    return factory


# -- the floor -----------------------------------------------------------------------------


def new_name(kind: str) -> str:
    return f"bench-{kind}-{uuid.uuid4().hex[:12]}"


def floor_seed(api: Any, labels: dict[str, str], tar: bytes) -> str:
    """Raw SDK: create a volume, a never-started container of the empty image, put_archive."""
    from docker.types import Mount

    name = new_name("floor")
    api.create_volume(name, labels=labels)
    helper = api.create_container(
        EMPTY,
        host_config=api.create_host_config(mounts=[Mount("/v", name)]),
        labels=labels,
        network_disabled=True,
    )["Id"]
    api.put_archive(helper, "/v", tar)
    api.remove_container(helper, force=True)
    return name


def floor_read(api: Any, labels: dict[str, str], name: str, count: int) -> None:
    from docker.types import Mount

    cid = api.create_container(
        BUSYBOX,
        reader_command(count),
        host_config=api.create_host_config(
            mounts=[Mount("/data", name, read_only=True)], network_mode="none"
        ),
        labels=labels,
    )["Id"]
    try:
        api.start(cid)
        status = api.wait(cid)["StatusCode"]
        if status != 0:
            raise RuntimeError(f"floor reader exited {status}")
    finally:
        api.remove_container(cid, force=True)


def floor_whole_test(api: Any, labels: dict[str, str], tar: bytes, count: int) -> None:
    name = floor_seed(api, labels, tar)
    try:
        floor_read(api, labels, name, count)
    finally:
        api.remove_volume(name)


def floor_seed_and_read(api: Any, labels: dict[str, str], tar: bytes, member: str) -> bytes:
    """Throughput floor: seed through a helper, read one file back with get_archive, remove."""
    from docker.types import Mount

    name = new_name("floor")
    api.create_volume(name, labels=labels)
    try:
        helper = api.create_container(
            EMPTY,
            host_config=api.create_host_config(mounts=[Mount("/v", name)]),
            labels=labels,
            network_disabled=True,
        )["Id"]
        try:
            api.put_archive(helper, "/v", tar)
            stream, _ = api.get_archive(helper, f"/v/{member}")
            with tarfile.open(fileobj=io.BytesIO(b"".join(stream)), mode="r") as tf:
                extracted = tf.extractfile(tf.getmembers()[0])
                assert extracted is not None
                return extracted.read()
        finally:
            api.remove_container(helper, force=True)
    finally:
        api.remove_volume(name)


def cli_whole_test(run_id: str, tar: bytes, count: int) -> None:
    """The docker CLI: one process per step, the tar streamed to `docker cp -` on stdin."""
    name = new_name("cli")
    label = f"{BENCH_LABEL}={run_id}"

    def docker(*args: str, stdin: bytes | None = None) -> str:
        done = subprocess.run(
            ["docker", *args], input=stdin, capture_output=True, check=False
        )
        if done.returncode:
            raise RuntimeError(f"docker {args[0]} failed: {done.stderr.decode()[:300]}")
        return done.stdout.decode().strip()

    docker("volume", "create", "--label", label, name)
    try:
        helper = docker("create", "--label", label, "--network", "none", "-v", f"{name}:/v", EMPTY)
        try:
            docker("cp", "-", f"{helper}:/v", stdin=tar)
        finally:
            docker("rm", "-f", helper)
        docker("run", "--rm", "--label", label, "--network", "none", "-v", f"{name}:/data:ro",
               BUSYBOX,
               *reader_command(count))
    finally:
        docker("volume", "rm", name)


# -- tracing HTTP calls to the engine ------------------------------------------------------

_HEX = re.compile(r"[0-9a-f]{64}")
_NAMES = re.compile(r"/(bench|pdv)-[A-Za-z0-9_.-]+")


def _shape(method: str, url: str) -> str:
    path = url.split("/v1.", 1)[-1]
    path = path.split("/", 1)[-1] if "/" in path else path
    path = _HEX.sub("<id>", path)
    path = _NAMES.sub("/<name>", path)
    path = re.sub(r"filters=[^&]*", "filters=...", path)
    return f"{method} /{path}"


@contextmanager
def trace_http(api: Any) -> Iterator[list[tuple[str, float]]]:
    """Record (method + path shape, seconds) of every request the APIClient sends."""
    calls: list[tuple[str, float]] = []
    original = api.send

    def send(request: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(request, **kwargs)
        finally:
            calls.append((_shape(request.method, request.url), time.perf_counter() - start))

    api.send = send
    try:
        yield calls
    finally:
        del api.send


# -- cleanup -------------------------------------------------------------------------------


def sweep(client: Any, run_id: str, dockervol_run_ids: list[str] = ()) -> list[str]:
    """Remove what this bench run left behind (only objects carrying its labels)."""
    left: list[str] = []
    filters = [{"label": f"{BENCH_LABEL}={run_id}"}]
    filters += [{"label": f"pytest-dockervol.run={rid}"} for rid in dockervol_run_ids]
    for flt in filters:
        for c in client.containers.list(all=True, filters=flt):
            left.append(f"container {c.name}")
            c.remove(force=True, v=True)
    for flt in filters:
        for v in client.volumes.list(filters=flt):
            left.append(f"volume {v.name}")
            try:
                v.remove(force=True)
            except Exception as exc:
                left.append(f"  (could not remove {v.name}: {exc})")
    return left


# -- CPU accounting (read-only looks at /proc) ------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _engine_pids() -> dict[str, list[int]]:
    """The dockerd serving the default socket (its pidfile) and the containerd it manages.

    Other engines may run on the same host (a test suite's private dockerd): they are not
    counted as "dockerd" but land in "others". Without the pidfile (another DOCKER_HOST),
    every dockerd/containerd process is counted."""
    procs: dict[int, tuple[str, int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            comm = stat[stat.index("(") + 1 : stat.rindex(")")]
            procs[int(entry)] = (comm, int(stat.rsplit(")", 1)[1].split()[1]))
    main = None
    if os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock") in (
        "unix:///var/run/docker.sock", "unix://var/run/docker.sock"
    ):
        try:
            main = int(Path("/var/run/docker.pid").read_text().strip())
        except (OSError, ValueError):
            main = None
    if main is not None and procs.get(main, ("",))[0] == "dockerd":
        containerd = [p for p, (c, ppid) in procs.items() if c == "containerd" and ppid == main]
        return {"dockerd": [main], "containerd": containerd}
    return {name: [p for p, (c, _) in procs.items() if c == name]
            for name in ("dockerd", "containerd")}


def cpu_snapshot() -> dict[str, float]:
    """CPU seconds so far: our reaped children (inner pytest + xdist workers), dockerd and
    containerd (their own + reaped children, e.g. dockerd's re-exec'd untar), whole machine."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    snap = {"client": ru.ru_utime + ru.ru_stime, "wall": time.perf_counter()}
    for name, pids in _engine_pids().items():
        total = 0.0
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += sum(int(f) for f in fields[11:15]) / _TICK  # utime stime cutime cstime
        snap[name] = total
    with open("/proc/stat") as f:
        cpu = [int(x) for x in f.readline().split()[1:]]
    snap["machine_busy"] = (sum(cpu) - cpu[3] - cpu[4]) / _TICK  # minus idle and iowait
    return snap


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Average busy cores over the interval, per consumer."""
    wall = after["wall"] - before["wall"]
    return {k: (after[k] - before[k]) / wall for k in before if k != "wall"} | {"wall": wall}


# -- stats and output ----------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def fmt_ms(seconds: float) -> str:
    if seconds != seconds:  # NaN
        return "n/a"
    ms = seconds * 1000
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.1f}"


def fmt_ratio(value: float, base: float) -> str:
    if value != value or base != base or base <= 0:
        return "n/a"
    return f"{value / base:.2f}x"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def emit_json(obj: Any) -> None:
    """Worker subprocesses print one JSON line prefixed with a marker on stdout."""
    sys.stdout.write("BENCH-JSON " + json.dumps(obj) + "\n")
    sys.stdout.flush()


def parse_json(stdout: str) -> Any:
    for line in reversed(stdout.splitlines()):
        if line.startswith("BENCH-JSON "):
            return json.loads(line[len("BENCH-JSON "):])
    raise RuntimeError("worker printed no result:\n" + stdout[-3000:])

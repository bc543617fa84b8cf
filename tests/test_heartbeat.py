"""Heartbeats across machines, on the real engine: a run on another machine (its own UTS and
pid namespace, hostname and TMPDIR: ``othermachine.py``) is judged from here by its
heartbeat in the engine alone. Switched off, it is reaped by the first run (or ``rm``) after
its heartbeat timeout; alive, paused or reached over TCP, it is never touched."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import docker
import pytest
from conftest import InnerPytest, cli, leftovers, remove_run, wait_for
from loopback import LoopbackProxy
from othermachine import HOSTNAME, other_machine
from sshengine import SshEngine

from pytest_dockervol._engine.engine import Engine
from pytest_dockervol._engine.labels import LABEL_HOST, LABEL_KIND, LABEL_RUN, RunIdentity
from pytest_dockervol._runs.heartbeat import Heart, engine_now, parse_engine_time
from pytest_dockervol._runs.lease import forget_run_state

#: The heartbeat timeout of every run in these tests: long enough that the engine's
#: second-granular stamps and a loaded CI machine never make a live run look silent.
TIMEOUT = 8
HEARTBEAT = f"--dockervol-heartbeat-timeout={TIMEOUT}"

HOLD = r"""
import os, pathlib, time

def test_hold(named_volume, anonymous_volume, volume_factory, worker_id):
    named_volume.seed({"a": "1"})
    volume_factory.shared("shared-key", seed={"s": "1"})
    (pathlib.Path(os.environ["SIGNALS"]) / f"ready-{worker_id}").touch()
    time.sleep(600)
"""

ALIVE = r"""
import os, pathlib, signal, subprocess, time

SIGNALS = pathlib.Path(os.environ["SIGNALS"])

def wait_for(name):
    while not (SIGNALS / name).exists():
        time.sleep(0.05)

def test_alive(named_volume, anonymous_volume):
    named_volume.seed({"a": "1"})
    (SIGNALS / "ready").touch()
    wait_for("pause")
    # A pause of the pytest process (a debugger, SIGSTOP); another process wakes it.
    subprocess.Popen(["sh", "-c", f"sleep {os.environ['PAUSE']}; kill -CONT {os.getpid()}"])
    (SIGNALS / "paused").touch()
    start = time.monotonic()
    os.kill(os.getpid(), signal.SIGSTOP)
    (SIGNALS / "resumed").write_text(f"{time.monotonic() - start:.3f}")
    wait_for("release")
    assert named_volume.read_text("a") == "1"
"""


def engine_of(client: docker.DockerClient) -> Engine:
    """The plugin's Engine over one of the tests' clients (its version unasked, as the
    watchdog's is): what the heartbeat's functions take."""
    return Engine(client, str(client.api.base_url), {})


def beats(client: docker.DockerClient, run_id: str) -> dict[str, str]:
    """The run's heartbeat volumes: name -> CreatedAt (the engine's clock)."""
    found = client.api.volumes(filters={"label": f"{LABEL_RUN}={run_id}"})["Volumes"] or []
    return {
        v["Name"]: v["CreatedAt"]
        for v in found
        if (v.get("Labels") or {}).get(LABEL_KIND) == "heartbeat"
    }


def silence(client: docker.DockerClient, run_id: str) -> float:
    """Seconds since the run's newest beat, by the engine's clock."""
    stamps = beats(client, run_id).values()
    assert stamps, f"run {run_id} has no heartbeat"
    return engine_now(engine_of(client)) - max(parse_engine_time(s) for s in stamps)


def listed_rows(listing: str, run_id: str) -> list[str]:
    """The rows ``pytest-dockervol ls`` prints under the run's line."""
    lines = listing.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"run {run_id} "))
    rows = []
    for line in lines[start + 1 :]:
        if line.startswith("run "):
            break
        rows.append(line)
    return rows


def held(client: docker.DockerClient, run_id: str) -> list[str]:
    """What the run holds, beats aside (their names change at every renewal)."""
    label = {"label": f"{LABEL_RUN}={run_id}"}
    volumes = client.api.volumes(filters=label)["Volumes"] or []
    found = [
        f"volume {v['Name']}"
        for v in volumes
        if (v.get("Labels") or {}).get(LABEL_KIND) != "heartbeat"
    ]
    found += [f"container {c['Id'][:12]}" for c in client.api.containers(all=True, filters=label)]
    return sorted(found)


def reap_from_here(inner: InnerPytest, reaper: str, *args: str) -> str:
    """One run on this machine, or one ``pytest-dockervol rm``: what it printed."""
    if reaper == "pytest-dockervol rm":
        done = cli("--heartbeat-timeout", str(TIMEOUT), "rm")
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout
    inner.pytester.makepyfile("def test_touch(named_volume):\n    pass\n")
    run = inner.run(HEARTBEAT, *args)
    run.result.assert_outcomes(passed=1)
    assert run.leftovers() == []
    return run.result.stdout.str()


@pytest.mark.parametrize("reaper", ["the next run", "pytest-dockervol rm"])
def test_a_run_whose_machine_vanished_is_reaped_once_its_heartbeat_stops(
    reaper: str, inner: InnerPytest, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    with other_machine(tmp_path, HOLD, "-n", "2", "--dist", "each", HEARTBEAT) as other:
        try:
            other.wait_signal("ready-gw0")
            other.wait_signal("ready-gw1")
            before = held(docker_client, other.run_id)
            # 2 workers x (named, anonymous, helpers) + the shared volume and its helper
            assert len(before) >= 6, before
            mine = docker_client.volumes.list(filters={"label": f"{LABEL_RUN}={other.run_id}"})
            assert {v.attrs["Labels"].get(LABEL_HOST) for v in mine} == {HOSTNAME}

            other.vanish()  # its watchdog with it: nothing there can reap or beat any more
            vanished = time.monotonic()
            listing = cli("--heartbeat-timeout", str(TIMEOUT), "ls").stdout
            assert f"run {other.run_id}  host {HOSTNAME}  running: on host {HOSTNAME}, " in listing
            # One row per resource it holds; its heartbeats are told on the run's line.
            rows = listed_rows(listing, other.run_id)
            assert len(rows) == len(before), rows
            assert not [row for row in rows if "heartbeat" in row], rows
            assert held(docker_client, other.run_id) == before

            # Once the engine's clock says the last beat is older than the timeout (+1: the
            # engine stamps volumes to the second), one run here removes all of it.
            wait_for(
                lambda: silence(docker_client, other.run_id) > TIMEOUT + 1,
                3 * TIMEOUT,
                "the heartbeat to age",
            )
            output = reap_from_here(inner, reaper)
            assert leftovers(docker_client, other.run_id) == []
            took = f"{time.monotonic() - vanished:.1f} s"
            print(
                f"{reaper}: reaped {len(before)} {took} after the vanishing (timeout {TIMEOUT} s)"
            )
            assert "its heartbeat stopped" in output
            assert f"(timeout {TIMEOUT} s)" in output
            assert other.run_id in output
        finally:
            remove_run(docker_client, other.run_id)


@pytest.mark.parametrize("transport", ["tcp", "ssh"])
def test_a_live_run_on_another_machine_is_never_reaped(
    transport: str,
    inner: InnerPytest,
    tmp_path: Path,
    docker_client: docker.DockerClient,
    request: pytest.FixtureRequest,
) -> None:
    """Over TCP or ssh, with the idle rule set to reap anything older than 0.36 s, and with
    its pytest process stopped for longer than the timeout: its watchdog keeps beating."""
    if transport == "tcp":
        proxy: LoopbackProxy = request.getfixturevalue("tcp_proxy")
        env = {"DOCKER_HOST": f"tcp://127.0.0.1:{proxy.port}"}
    else:
        ssh: SshEngine = request.getfixturevalue("ssh_engine")
        env = {"DOCKER_HOST": ssh.address, **ssh.env()}
    pause = TIMEOUT + 6
    env["PAUSE"] = str(pause)
    seen: set[str] = set()
    with other_machine(tmp_path, ALIVE, HEARTBEAT, env=env) as other:
        try:
            other.wait_signal("ready")
            before = held(docker_client, other.run_id)
            assert len(before) >= 3, before

            def still_there() -> None:
                reap_from_here(inner, "the next run", "--dockervol-reap-after=0.0001")
                assert held(docker_client, other.run_id) == before
                seen.update(beats(docker_client, other.run_id))

            still_there()
            other.signal("pause")
            other.wait_signal("paused")
            paused_at = time.monotonic()
            wait_for(lambda: other.stopped() != [], 10, "the other pytest to stop")
            wait_for(lambda: time.monotonic() - paused_at > TIMEOUT + 1, 2 * TIMEOUT, "the pause")
            assert other.stopped() != []  # still stopped, for longer than the timeout
            still_there()
            refused = cli("--heartbeat-timeout", str(TIMEOUT), "rm", "--run", other.run_id)
            assert refused.returncode == 1
            assert f"run {other.run_id} is still running (on host {HOSTNAME}, its heartbeat is" in (
                refused.stdout
            )
            other.wait_signal("resumed", timeout=3 * pause)
            assert float((other.signals / "resumed").read_text()) >= pause - 1
            still_there()
            other.signal("release")
            output = other.finish()
            assert "1 passed" in output
            assert f" at {env['DOCKER_HOST']} (from DOCKER_HOST)" in output  # its transport
            # The beats were renewed all along, and went with the run.
            assert len(seen) >= 3, seen
            assert leftovers(docker_client, other.run_id) == []
        finally:
            remove_run(docker_client, other.run_id)


KEEP = r"""
def test_keep(named_volume):
    named_volume.seed({"a": "1"})
"""


def test_a_kept_run_of_another_machine_stays_until_rm_run(
    inner: InnerPytest, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    """--dockervol-keep leaves a marker instead of a heartbeat: no run on any machine takes
    the kept volumes for a dead run's, however long ago it ended."""
    with other_machine(tmp_path, KEEP, HEARTBEAT, "--dockervol-keep") as other:
        try:
            other.finish()
            kept = held(docker_client, other.run_id)
            assert any(item.endswith(f"-{other.run_id[:8]}-kept") for item in kept), kept
            assert beats(docker_client, other.run_id) == {}
            time.sleep(TIMEOUT + 2)  # longer than any heartbeat timeout of these runs
            reap_from_here(inner, "the next run", "--dockervol-reap-after=0.0001")
            assert held(docker_client, other.run_id) == kept
            listing = cli("ls").stdout
            assert f"run {other.run_id}  host {HOSTNAME}  kept: ended with --dockervol-keep" in (
                listing
            )
            removed = cli("rm", "--run", other.run_id)
            assert removed.returncode == 0, removed.stdout + removed.stderr
            assert leftovers(docker_client, other.run_id) == []
        finally:
            remove_run(docker_client, other.run_id)


def test_a_run_that_never_touches_the_engine_gets_no_heartbeat(
    inner: InnerPytest, tmp_path: Path
) -> None:
    """Its watchdog (started for every xdist run) waits for a first beat: it never
    connects, so nothing is created for a run that creates nothing."""
    listing = tmp_path / "beats.txt"
    inner.pytester.makepyfile(
        f"""
        import time, docker

        def test_no_volumes():
            time.sleep(3)  # three renewal intervals of a 5 s timeout
            client = docker.from_env()
            found = client.volumes.list(filters={{"label": "pytest-dockervol.kind=heartbeat"}})
            open({str(listing)!r}, "w").write("\\n".join(v.name for v in found))
        """
    )
    run = inner.run("-n", "2", "--dockervol-heartbeat-timeout=5")
    run.result.assert_outcomes(passed=1)
    mine = [n for n in listing.read_text().split() if n.startswith(f"pdv-{run.run_id[:8]}-")]
    assert mine == []
    assert run.leftovers() == []


def test_the_engine_clock_is_the_same_through_every_transport(
    docker_client: docker.DockerClient, tcp_proxy: LoopbackProxy, ssh_engine: SshEngine
) -> None:
    """The reaper's clock is the engine's, whichever way it is reached (and agrees with
    ``docker info``'s SystemTime, to the second it is stamped with). Each reading is taken
    back to one moment by this machine's monotonic clock: on a busy machine an ssh round
    trip alone takes a second or more."""
    start = time.monotonic()
    offsets: dict[str, float] = {}
    latencies: list[float] = []

    def read(transport: str, engine_clock: Callable[[], float]) -> None:
        before = time.monotonic()
        reading = engine_clock()
        after = time.monotonic()
        latencies.append(after - before)
        offsets[transport] = reading - ((before + after) / 2 - start)

    read("unix", lambda: engine_now(engine_of(docker_client)))
    tcp = docker.DockerClient(base_url=f"tcp://127.0.0.1:{tcp_proxy.port}", timeout=30)
    read("tcp", lambda: engine_now(engine_of(tcp)))
    tcp.close()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", ssh_engine.env()["PATH"])
        ssh = docker.DockerClient(base_url=ssh_engine.address, use_ssh_client=True, timeout=30)
        read("ssh", lambda: engine_now(engine_of(ssh)))
        ssh.close()
    read("SystemTime", lambda: parse_engine_time(docker_client.info()["SystemTime"]))
    # Stamped to the second (the Date header), read somewhere within each round trip.
    assert max(offsets.values()) - min(offsets.values()) < 1.5 + max(latencies), offsets


def test_ls_tells_a_run_with_nothing_but_its_heartbeat(docker_client: docker.DockerClient) -> None:
    """A run's first beat comes just before its first resource: between the two, ``ls``
    shows the run, judged by its heartbeat, and says it holds nothing yet."""
    me = RunIdentity.new()
    try:
        assert Heart.of(me, TIMEOUT).beat(engine_of(docker_client), 0) is not None
        listing = cli("ls").stdout
        assert f"run {me.run_id}  host {me.host}  running: on this machine, its heartbeat is " in (
            listing
        )
        assert listed_rows(listing, me.run_id) == ["  nothing yet but its heartbeat"]
    finally:
        remove_run(docker_client, me.run_id)
        forget_run_state(me.run_id)

"""A private Docker engine for tests that stop, pause or reach the engine over TCP.

It runs beside the machine's engine with its own data root, exec root, unix socket, a
TCP listener on 127.0.0.1 and its own bridge (no iptables), so stopping it disturbs
nothing else. Never ``--bridge=none``: dockerd then deletes the host's ``docker0``,
breaking the machine's main engine. It is the ``dockerd`` first on PATH (CI's Docker 26.1
pass puts 26.1's first), one at a time: a running one of another binary is stopped first,
and each binary keeps a data root of its own. Also a small CLI for CI:
python tests/engines.py start|stop
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import docker
import docker.errors

BASE = Path(os.environ.get("DOCKERVOL_PRIVATE_ENGINE_DIR", "/tmp/pytest-dockervol-private-engine"))
TCP_PORT = int(os.environ.get("DOCKERVOL_PRIVATE_ENGINE_PORT", "23750"))
BRIDGE = "pdvtest0"
BRIDGE_ADDRESS = "10.231.0.1/24"  # only the private engine's own containers live here
IMAGES = ("pytest-dockervol-test/busybox:latest",)


class PrivateEngine:
    unix = f"unix://{BASE}/docker.sock"
    tcp = f"tcp://127.0.0.1:{TCP_PORT}"

    @property
    def pid(self) -> int | None:
        try:
            pid = int((BASE / "dockerd.pid").read_text())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    def answers(self, timeout: float = 3) -> bool:
        try:
            client = docker.DockerClient(base_url=self.unix, timeout=int(timeout) or 1)
            client.ping()
            client.close()
        except (docker.errors.DockerException, OSError):
            return False
        return True

    @staticmethod
    def wanted_binary() -> str:
        found = shutil.which("dockerd")
        if found is None:
            raise RuntimeError("dockerd is not on PATH (apt-get install docker.io)")
        return os.path.realpath(found)

    def start(self) -> None:
        """Idempotent: reuse a running one of the same binary; wait until it answers; load
        the test images."""
        if self.pid is not None and (
            self._runs_in_a_deleted_directory() or self._running_binary() != self.wanted_binary()
        ):
            self.stop()  # an older suite's (its directory deleted since), or another dockerd
        if self.pid is None or not self.answers():
            self._launch()
        self._load_images()

    def _running_binary(self) -> str:
        try:
            return os.path.realpath(os.readlink(f"/proc/{self.pid}/exe"))
        except OSError:
            return ""

    def _runs_in_a_deleted_directory(self) -> bool:
        try:
            return os.readlink(f"/proc/{self.pid}/cwd").endswith(" (deleted)")
        except OSError:
            return False

    def _launch(self) -> None:
        BASE.mkdir(parents=True, exist_ok=True)
        if _port_in_use(TCP_PORT):
            raise RuntimeError(
                f"port {TCP_PORT} on 127.0.0.1 is taken; set DOCKERVOL_PRIVATE_ENGINE_PORT"
            )
        _ensure_bridge()
        log = open(BASE / "dockerd.log", "ab")  # noqa: SIM115 - the daemon keeps it
        binary = self.wanted_binary()
        # A data root per binary: a newer dockerd upgrades an older one's in place.
        digest = hashlib.sha256(binary.encode()).hexdigest()[:12]
        data = "data" if binary == "/usr/sbin/dockerd" else f"data-{digest}"
        subprocess.Popen(
            [
                binary,
                f"--data-root={BASE}/{data}",
                f"--exec-root={BASE}/exec",
                f"--pidfile={BASE}/dockerd.pid",
                f"--host={self.unix}",
                f"--host={self.tcp}",
                f"--bridge={BRIDGE}",
                "--iptables=false",
            ],
            stdout=log,
            stderr=log,
            start_new_session=True,
            cwd="/",  # never a test's directory, which goes away while the daemon lives
        )
        deadline = time.monotonic() + 60
        while not self.answers():
            if time.monotonic() > deadline:
                tail = (BASE / "dockerd.log").read_text()[-2000:]
                raise RuntimeError(f"private dockerd did not come up:\n{tail}")
            time.sleep(0.3)

    def _load_images(self) -> None:
        private = docker.DockerClient(base_url=self.unix)
        for image in IMAGES:
            try:
                private.images.get(image)
            except docker.errors.ImageNotFound:
                save = subprocess.Popen(
                    ["docker", "save", image],
                    stdout=subprocess.PIPE,
                    env={**os.environ, "DOCKER_HOST": ""},
                )
                assert save.stdout is not None
                with save.stdout:
                    subprocess.run(
                        ["docker", "load", "-q"],
                        stdin=save.stdout,
                        check=True,
                        env={**os.environ, "DOCKER_HOST": self.unix},
                    )
                save.wait()
        private.close()

    def stop(self) -> None:
        pid = self.pid
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while self.pid is not None and time.monotonic() < deadline:
            time.sleep(0.2)

    def pause(self) -> None:
        assert self.pid is not None
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.pid is not None
        os.kill(self.pid, signal.SIGCONT)


def _ensure_bridge() -> None:
    """The private engine's own bridge interface (dockerd needs it to exist)."""
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        return
    subprocess.run(["ip", "link", "add", BRIDGE, "type", "bridge"], check=True)
    subprocess.run(["ip", "addr", "add", BRIDGE_ADDRESS, "dev", BRIDGE], check=True)
    subprocess.run(["ip", "link", "set", BRIDGE, "up"], check=True)


def _port_in_use(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


if __name__ == "__main__":
    engine = PrivateEngine()
    if sys.argv[1:] == ["start"]:
        engine.start()
        print(engine.tcp)
    elif sys.argv[1:] == ["stop"]:
        engine.stop()
    else:
        sys.exit("usage: python tests/engines.py start|stop")

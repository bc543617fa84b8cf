"""An ``ssh://`` engine on loopback, for the context and heartbeat tests: sshd on
127.0.0.1:<free port>, root by key only, whose ``docker system dial-stdio`` reaches the
outer engine (DOCKER_HOST is handed on with ``SetEnv``/``AcceptEnv``).

The docker SDK, like the docker CLI, shells out to ``ssh``; the directory ``bin`` puts
first on PATH holds an ``ssh`` that reads this engine's client configuration (its key, no
host-key prompt), so nothing of the user's ``~/.ssh`` is read or changed.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
SSH = shutil.which("ssh") or "/usr/bin/ssh"


@dataclass
class SshEngine:
    #: The context's endpoint: ``ssh://root@127.0.0.1:PORT``.
    address: str
    #: Put first on PATH (``env``) for whatever connects to ``address``.
    bin: Path
    proc: subprocess.Popen[bytes]
    log: Path

    def env(self) -> dict[str, str]:
        return {"PATH": f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}"}

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return int(probe.getsockname()[1])


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-N", "", "-t", "ed25519", "-f", str(path)],
        check=True,
        capture_output=True,
    )


def start_ssh_engine(base: Path) -> SshEngine:
    """sshd for the outer engine (DOCKER_HOST, else the default socket); AssertionError
    naming the package when sshd is missing (CI installs openssh-server)."""
    assert os.path.exists(SSHD), f"{SSHD} missing: apt-get install openssh-server"
    base.mkdir(parents=True, exist_ok=True)
    for key in ("host_key", "client_key"):
        _keygen(base / key)
    shutil.copy(base / "client_key.pub", base / "authorized_keys")
    port = _free_port()
    (base / "sshd_config").write_text(
        f"ListenAddress 127.0.0.1\nPort {port}\nHostKey {base / 'host_key'}\n"
        f"PidFile {base / 'sshd.pid'}\nAuthorizedKeysFile {base / 'authorized_keys'}\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPrintMotd no\n"
        "AcceptEnv DOCKER_HOST\n"
    )
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
    log = base / "sshd.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(base / "sshd_config")], stdout=out, stderr=out
        )
    forwarded = (
        f"SetEnv DOCKER_HOST={os.environ['DOCKER_HOST']}\n" if "DOCKER_HOST" in (os.environ) else ""
    )
    (base / "ssh_config").write_text(
        f"Host *\n  IdentityFile {base / 'client_key'}\n  IdentitiesOnly yes\n"
        "  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  BatchMode yes\n"
        f"  LogLevel ERROR\n  {forwarded}"
    )
    wrapper_dir = base / "bin"
    wrapper_dir.mkdir()
    wrapper = wrapper_dir / "ssh"
    wrapper.write_text(f'#!/bin/sh\nexec {SSH} -F {base / "ssh_config"} "$@"\n')
    wrapper.chmod(0o755)
    engine = SshEngine(f"ssh://root@127.0.0.1:{port}", wrapper_dir, proc, log)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return engine
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                engine.stop()
                raise AssertionError(f"sshd did not start: {log.read_text()}") from None
            time.sleep(0.1)

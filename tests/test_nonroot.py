"""pytest as an unprivileged user: root-written files in a host_volume must not break cleanup.

Needs root to create the user (CI runs as root); the user reaches the engine through
the docker group, like a developer who is allowed to use Docker.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

import docker
import pytest
from conftest import INNER_RUN_IDS, copy_inner_helpers, leftovers

USER = "dockervol-nonroot"
BASE = Path("/tmp/pytest-dockervol-nonroot")
REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 and not os.environ.get("CI"),
    reason="creates a user and a virtualenv: run as root (CI does)",
)

INNER = r"""
import os, pytest
from pytest_dockervol import SeedSourceError
from inner_helpers import IMAGE

SCRIPT = ("mkdir -p /h/a/b && echo x > /h/a/b/f && chmod 700 /h/a /h/a/b && "
          "mkdir /h/locked && echo y > /h/locked/g && chmod 500 /h/locked && echo z > /h/top")

@pytest.mark.parametrize("i", range(3))
def test_root_container_writes_into_host_volume(host_volume, run_container, i):
    assert os.geteuid() != 0
    c = run_container(IMAGE, ["sh", "-c", SCRIPT], mounts=[host_volume.mount("/h")])
    assert c.wait(timeout=60)["StatusCode"] == 0
    assert (host_volume.path / "a").stat().st_uid == 0
    assert host_volume.files() == ["top"]  # the rest is unreadable to us, as on any host
    with open(os.environ["RECORD"], "a") as f:
        f.write(f"{host_volume.path}\n")

def test_seeding_foreign_ownership_needs_root(host_volume):
    with pytest.raises(SeedSourceError, match="root"):
        host_volume.seed({"x": "y"}, uid=999)
    assert host_volume.files() == []
"""


def _ensure_user_and_venv() -> Path:
    """Idempotent: the user (in the docker group) and a venv with this checkout installed."""
    if subprocess.run(["id", USER], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--no-create-home", "-G", "docker", USER], check=True)
    BASE.mkdir(exist_ok=True)
    venv = BASE / "venv"
    python = venv / "bin" / "python"
    if not python.exists():
        base_python = shutil.which("python3", path="/usr/bin") or sys.executable
        subprocess.run([base_python, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "-q",
                "pytest>=8",
                "pytest-xdist",
                "docker",
                "filelock",
            ],
            check=True,
        )
    wheels = BASE / "wheels"
    shutil.rmtree(wheels, ignore_errors=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(REPO)],
        check=True,
    )
    (wheel,) = wheels.glob("*.whl")
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(wheel)],
        check=True,
    )
    return python


def _run_as(
    user: pwd.struct_passwd, command: list[str], cwd: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` as ``user``, also in the docker group, capturing its text output."""
    return subprocess.run(
        command,
        user=user.pw_uid,
        group=user.pw_gid,
        extra_groups=[grp.getgrnam("docker").gr_gid],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_non_root_pytest_cleans_up_root_written_host_volumes(
    docker_client: docker.DockerClient, image: str
) -> None:
    python = _ensure_user_and_venv()
    user = pwd.getpwnam(USER)
    work = BASE / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    (work / "test_inner.py").write_text(INNER)
    copy_inner_helpers(work)
    record = work / "record.txt"
    record.touch()
    os.chown(work, user.pw_uid, user.pw_gid)
    os.chown(record, user.pw_uid, user.pw_gid)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(work),
        "DOCKERVOL_IMAGE": image,
        "RECORD": str(record),
        "DOCKER_HOST": os.environ.get("DOCKER_HOST", ""),
    }
    if not env["DOCKER_HOST"]:
        del env["DOCKER_HOST"]
    command = [
        str(python),
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "--basetemp",
        str(work / "basetemp"),
        "-W",
        "error::pytest_dockervol.DockervolCleanupWarning",
        "-n",
        "2",
    ]
    result = _run_as(user, command, work, env)
    output = result.stdout + result.stderr
    assert "4 passed" in output, output
    assert result.returncode == 0, output
    run_id = output.split("dockervol: run ", 1)[1][:32]
    INNER_RUN_IDS.append(run_id)
    assert leftovers(docker_client, run_id) == []
    paths = record.read_text().split()
    assert len(paths) == 3
    for path in paths:
        assert not Path(path).exists(), f"{path} survived teardown"
    # pytest's own basetemp cleanup, run again as the same user, finds nothing it can't delete.
    again = _run_as(user, command, work, env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "rm_rf" not in again.stdout + again.stderr

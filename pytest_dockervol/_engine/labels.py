"""Who created a resource: run id, worker, labels that prove ownership, and names.

Every Docker object the plugin creates carries these labels. They are the only
proof of ownership the plugin accepts before it removes anything.
"""

from __future__ import annotations

import os
import re
import socket
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import MAX_VOLUME_NAME, LabelError, VolumeNameError

LABEL_PREFIX = "pytest-dockervol."
LABEL_OWNER = LABEL_PREFIX + "owner"
LABEL_RUN = LABEL_PREFIX + "run"
LABEL_WORKER = LABEL_PREFIX + "worker"
LABEL_CREATOR = LABEL_PREFIX + "creator"
LABEL_KIND = LABEL_PREFIX + "kind"
LABEL_PID = LABEL_PREFIX + "pid"
LABEL_HOST = LABEL_PREFIX + "host"
LABEL_CREATED = LABEL_PREFIX + "created"
LABEL_NONCE = LABEL_PREFIX + "nonce"
LABEL_SESSION_PID = LABEL_PREFIX + "session-pid"
LABEL_NAMESPACE = LABEL_PREFIX + "namespace"
LABEL_SHARED_KEY = LABEL_PREFIX + "shared-key"
#: On a clone: the name of the volume it was copied from.
LABEL_CLONE_OF = LABEL_PREFIX + "clone-of"
#: On a snapshot's hidden volume: the name of the volume it was taken of.
LABEL_SNAPSHOT_OF = LABEL_PREFIX + "snapshot-of"
#: On a copy-on-write volume: the volume that holds its upper and work directories.
LABEL_LAYER = LABEL_PREFIX + "layer"
#: Prefix: on a copy-on-write volume, one label per volume it reads as a layer (+ its name).
LABEL_NEEDS = LABEL_PREFIX + "needs."
#: On a golden-cache entry and its markers: the digest of everything the entry was built from.
LABEL_CACHE_KEY = LABEL_PREFIX + "cache-key"
#: On a golden-cache entry: the key the tests gave (for ``pytest-dockervol ls --cache``).
LABEL_CACHE_NAME = LABEL_PREFIX + "cache-name"
#: On a golden-cache marker: the entry it declares complete, and when a run last used it.
LABEL_CACHE_ENTRY = LABEL_PREFIX + "cache-entry"
LABEL_CACHE_USED = LABEL_PREFIX + "cache-used"
#: On a heartbeat: the seconds after which its run counts as over once it stops beating.
LABEL_HEARTBEAT_TIMEOUT = LABEL_PREFIX + "heartbeat-timeout"
OWNER_VALUE = "pytest-dockervol"

#: Docker 23+ treats volumes with this label as anonymous (``volume prune`` removes them).
ANONYMOUS_VOLUME_LABEL = "com.docker.volume.anonymous"

_VOLUME_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
_UNSAFE_NAME_CHARS = re.compile(r"[^a-zA-Z0-9_.-]+")
_SLUG_MAX = 40


def process_namespace() -> str:
    """Boot id and pid namespace: pids are comparable only when both match."""
    try:
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        pid_ns = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return "unknown"
    return f"{boot_id}:{pid_ns}"


def check_volume_name(name: str) -> str:
    """Return ``name`` if Docker accepts it as a volume name, else raise VolumeNameError.

    The whole name must match (``fullmatch``: a ``$`` would let a trailing newline by),
    and fit in one directory name (the local driver's ``/var/lib/docker/volumes/<name>``)."""
    if not isinstance(name, str) or len(name) > MAX_VOLUME_NAME or not _VOLUME_NAME.fullmatch(name):
        raise VolumeNameError(str(name))
    return name


def check_user_labels(labels: dict[str, str] | None) -> dict[str, str]:
    """Refuse labels that would forge or overwrite the plugin's proof of ownership."""
    if labels is None:
        return {}
    checked: dict[str, str] = {}
    for key, value in labels.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise LabelError(f"{key!r}={value!r}", "label keys and values must be strings")
        if key.startswith(LABEL_PREFIX):
            raise LabelError(key, f"the {LABEL_PREFIX!r} prefix is reserved for the plugin")
        checked[key] = value
    return checked


def slugify(text: str) -> str:
    """Turn a test name into a volume-name fragment (for humans reading `docker volume ls`)."""
    slug = _UNSAFE_NAME_CHARS.sub("-", text).strip("-._")
    return slug[:_SLUG_MAX].rstrip("-._") or "vol"


@dataclass(frozen=True)
class RunIdentity:
    """The test run and the process (controller or xdist worker) that create resources."""

    run_id: str
    worker: str
    name_prefix: str = "pdv"
    pid: int = field(default_factory=os.getpid)
    host: str = field(default_factory=socket.gethostname)
    #: The pid of the run's first process (xdist controller), whose death ends the run.
    session_pid: int = field(default_factory=os.getpid)
    namespace: str = field(default_factory=process_namespace)

    @classmethod
    def new(cls, name_prefix: str = "pdv") -> RunIdentity:
        return cls(run_id=uuid.uuid4().hex, worker="main", name_prefix=name_prefix)

    @classmethod
    def from_workerinput(cls, workerinput: dict[str, Any], name_prefix: str = "pdv") -> RunIdentity:
        """An xdist worker: the run id is shared by all workers of one run."""
        run_id = str(workerinput.get("dockervol_run_id") or workerinput["testrunuid"])
        session_pid = int(workerinput.get("dockervol_session_pid") or os.getppid())
        return cls(
            run_id=run_id,
            worker=str(workerinput["workerid"]),
            name_prefix=name_prefix,
            session_pid=session_pid,
        )

    @property
    def is_worker(self) -> bool:
        return self.worker != "main"

    @property
    def short_run(self) -> str:
        return self.run_id[:8]

    def labels(self, kind: str, creator: str) -> dict[str, str]:
        """Labels proving that this run created the resource."""
        return {
            LABEL_OWNER: OWNER_VALUE,
            LABEL_RUN: self.run_id,
            LABEL_WORKER: self.worker,
            LABEL_CREATOR: creator,
            LABEL_KIND: kind,
            LABEL_PID: str(self.pid),
            LABEL_SESSION_PID: str(self.session_pid),
            LABEL_HOST: self.host,
            LABEL_NAMESPACE: self.namespace,
            LABEL_CREATED: f"{time.time():.3f}",
        }

    def owns(self, labels: dict[str, str] | None) -> bool:
        """True only for resources labelled as created by this very run."""
        labels = labels or {}
        return labels.get(LABEL_OWNER) == OWNER_VALUE and labels.get(LABEL_RUN) == self.run_id

    def volume_name(self, creator: str, serial: int) -> str:
        """A name unique across runs (run id), workers (worker id) and volumes (serial)."""
        name = f"{self.name_prefix}-{self.short_run}-{self.worker}-{slugify(creator)}-{serial}"
        return check_volume_name(name)

"""Volumes created and seeded once per test run, however many xdist workers ask.

The first worker to take the key's lock creates and seeds the volume; the others
wait on the lock and then find a status file saying ``ready`` (or ``failed``,
with the error every worker then raises). Nobody sees a half-seeded volume,
because the status is written only after the seed returned. The volume belongs
to the run, not to a worker: the run's first process removes it when the whole
run is over (xdist runs the controller's sessionfinish after every worker's).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from .._engine.labels import LABEL_SHARED_KEY, check_volume_name, slugify
from .._engine.statedir import state_dir
from .._errors import DockervolUsageError, SharedSeedError
from .._volumes.base import SeedSource, prepare_seed
from .._volumes.docker import NamedVolume, Snapshot
from .._volumes.owner import ResourceOwner
from .once import OncePerRun

if TYPE_CHECKING:
    from typing_extensions import Self


class SharedVolume(NamedVolume):
    """A named volume shared by every worker of the run; removed when the run ends."""

    kind = "shared"
    cloned_elsewhere = True
    _run_owner = False

    def remove(self) -> None:
        __tracebackhide__ = True
        if not self._run_owner:
            raise DockervolUsageError(
                f"shared volume {self.name} belongs to the whole run and is removed when it "
                "ends; use volume_factory.named() for a volume you remove yourself"
            )
        super().remove()

    def restore(self, snapshot: Snapshot) -> Self:
        raise DockervolUsageError(
            f"shared volume {self.name} belongs to the whole run and cannot be restored; "
            "restore a clone of it instead (volume.clone())"
        )

    def release_helper(self) -> None:
        """This process is done with the volume: remove only its own helper container."""
        self._helper.drop()


class _HelperRelease:
    """What a worker registers for a shared volume: its helper goes, the volume stays."""

    kind = "helper of shared volume"

    def __init__(self, volume: SharedVolume) -> None:
        self.volume = volume
        self.name = volume.name
        self.removed = False

    def remove(self) -> None:
        self.removed = True
        self.volume.release_helper()


def shared_volume(owner: ResourceOwner, key: str, seed: SeedSource | None) -> SharedVolume:
    """The run's volume for ``key``: created and seeded by whichever process asks first."""
    __tracebackhide__ = True
    if not isinstance(key, str) or not key:
        raise DockervolUsageError(f"shared volume key {key!r} must be a non-empty string")
    identity = owner.identity
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    name = check_volume_name(
        f"{identity.name_prefix}-{identity.short_run}-shared-{slugify(key)[:24]}-{digest}"
    )
    run_dir = state_dir() / "runs" / identity.run_id
    once = OncePerRun(
        run_dir / f"{digest}.lock",
        run_dir / f"{digest}.json",
        lambda cause, where: SharedSeedError(key, cause, where),
    )
    with once.turn() as recorded:
        if recorded is None:
            _create_and_seed(owner, once, name, digest, seed)
    volume = SharedVolume(owner, owner.creating_engine, name, creator=owner.creator)
    if identity.is_worker:
        owner.register(_HelperRelease(volume))
    else:
        volume._run_owner = True
        owner.register(volume)
    return volume


def _create_and_seed(
    owner: ResourceOwner, once: OncePerRun, name: str, digest: str, seed: SeedSource | None
) -> None:
    """Runs once per run, under the key's lock; records the outcome for the other workers."""
    __tracebackhide__ = True
    worker = owner.identity.worker
    created: list[SharedVolume] = []

    def make() -> None:
        prepared = prepare_seed(seed)
        volume = SharedVolume.create(owner, name, kind="shared", labels={LABEL_SHARED_KEY: digest})
        created.append(volume)
        volume._run_owner = True  # until it is seeded, this process answers for it
        try:
            if prepared is not None:
                volume.seed(prepared)
            volume.release_helper()
        except BaseException:
            owner.finalize(volume)
            raise

    def where() -> str:
        return f"{worker}'s seed" if created else f"{worker} while creating it"

    once.build(make, where)

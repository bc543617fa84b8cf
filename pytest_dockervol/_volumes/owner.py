"""What volumes, snapshots, shared volumes and containers need of the session that made them.

The session's ``VolumeFactory`` is the one owner; the resources know it only through this
interface, as pytest's path helpers know ``tmp_path_factory`` only through a ``register``
callback. So the resource modules never import the factory, and a new kind of resource
needs nothing but these few calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .._engine.engine import Engine
    from .._engine.labels import RunIdentity
    from .cow import CopyOnWrite


class Removable(Protocol):
    """Anything the session removes at the latest when it ends."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def removed(self) -> bool: ...

    def remove(self) -> None: ...


class ResourceOwner(Protocol):
    """Creates nothing itself: names, labels and cleanup for what its resources create."""

    @property
    def identity(self) -> RunIdentity:
        """The run and process: the labels that prove ownership."""

    @property
    def creator(self) -> str:
        """Who is creating now (the running test's node id, or ``session``), for labels."""

    @property
    def creating_engine(self) -> Engine:
        """The engine, for a call about to create something (the run is guarded from then)."""

    @property
    def copy_on_write(self) -> CopyOnWrite:
        """Whether clones on this engine may be copy-on-write (decided once, on first ask)."""

    def next_name(self) -> str:
        """A volume name no other run, worker or volume of this run uses."""

    def register(self, resource: Removable) -> None:
        """Remove ``resource`` when the session ends, unless it was removed before."""

    def finalize(self, resource: Removable) -> None:
        """Remove ``resource`` now (or keep it, with --dockervol-keep); report, never raise."""

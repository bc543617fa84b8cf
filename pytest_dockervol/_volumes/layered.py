"""Who reads whom among this process's copy-on-write volumes.

An overlay's lower layers must not change while it is in use (the kernel's rule), so a
volume that clones read is neither changed nor removed: a change is refused, a removal
waits until the last clone that reads it is gone, and a layer volume goes with its clone.
Removals therefore always run in dependency order: clones, their layers, then sources.
"""

from __future__ import annotations

import abc
from typing import ClassVar

from .._engine.engine import Engine
from .._errors import ClonesAliveError
from .base import Volume
from .cow import layered_on


class LayeredVolume(Volume):
    """A Docker volume that may be read by copy-on-write clones, or be one itself."""

    #: Other processes (xdist workers, later runs) may clone it: ask the engine for readers.
    cloned_elsewhere: ClassVar[bool] = False
    #: A layer volume: it exists for the one volume that reads it, and goes with it.
    removed_with_last_reader: ClassVar[bool] = False

    def __init__(self, name: str, engine: Engine) -> None:
        super().__init__(name)
        self._engine = engine
        #: Copy-on-write volumes of this process that read this one as a layer, and the
        #: volumes this one reads (its source and its own layer volume) if it is one.
        self._dependents: list[LayeredVolume] = []
        self._layers: list[LayeredVolume] = []
        #: remove() was asked while dependents lived: done when the last one goes.
        self._removal_deferred = False

    @property
    def copy_on_write(self) -> bool:
        """Whether the volume is a copy-on-write overlay of another (its clone() or restore()
        cost milliseconds whatever the size; its writes never reach the source)."""
        return bool(self._layers)

    def _check_writable(self, action: str) -> None:
        """Refuse to change a volume that copy-on-write clones read."""
        __tracebackhide__ = True
        self._check_alive()
        clones = self._live_clones()
        if clones:
            raise ClonesAliveError(self.name, action, ", ".join(clones))

    def _live_clones(self) -> list[str]:
        """Names of live copy-on-write volumes that read this one: this process's, and for
        volumes other processes may clone (``cloned_elsewhere``), whatever the engine lists."""
        names = [d.name for d in self._dependents if not d.removed]
        if self.cloned_elsewhere:
            names += [n for n in layered_on(self._engine, self.name) if n not in names]
        return names

    def remove(self) -> None:
        """Remove the volume now (the end of the session would otherwise do it). While this
        process's copy-on-write clones read it, the removal waits for the last of them."""
        __tracebackhide__ = True
        if self._removed:
            return
        if any(not d.removed for d in self._dependents):
            self._removed = self._removal_deferred = True
            return
        others = self._live_clones()
        if others:
            raise ClonesAliveError(self.name, "remove", ", ".join(others))
        self._remove_from_engine()
        self._removed = True
        self._release_layers()

    @abc.abstractmethod
    def _remove_from_engine(self) -> None:
        """Remove the volume itself (and what of the run uses it)."""

    def _release_layers(self) -> None:
        """This volume no longer reads its layers: each may now go, if it waits for that."""
        layers, self._layers = self._layers, []
        for layer in layers:
            layer._dependent_gone(self)

    def _dependent_gone(self, dependent: LayeredVolume) -> None:
        if dependent in self._dependents:
            self._dependents.remove(dependent)
        if any(not d.removed for d in self._dependents):
            return
        if self._removal_deferred or (self.removed_with_last_reader and not self._dependents):
            self._removed = self._removal_deferred = False
            self.remove()

    def _read_by(self, dependent: LayeredVolume, *layers: LayeredVolume) -> None:
        """Record that ``dependent`` now reads this volume (and ``layers``) as its layers."""
        dependent._layers = [self, *layers]
        for layer in dependent._layers:
            layer._dependents.append(dependent)

    def _read_from(self, source: LayeredVolume, *layers: LayeredVolume) -> None:
        """Record that this volume now reads ``source`` (and ``layers``) as its layers."""
        source._read_by(self, *layers)

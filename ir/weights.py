"""The weight table: values of a graph's `weight` nodes, kept apart from the graph.

Entries are dense numpy arrays, `PackedWeight`s (compressed storage), or loaders called on
first use (for safetensors files). A shape-only graph has an empty table; functional runs on it
use `random_weights`, which fills every weight with seeded random values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import numpy as np

from sparseflow.ir.errors import InputError
from sparseflow.ir.formats import PackedWeight

WeightValue = np.ndarray | PackedWeight
WeightEntry = WeightValue | Callable[[], WeightValue]


class Weights(Mapping[str, WeightValue]):
    """A read-only mapping from weight name to value, loading lazy entries on first access."""

    def __init__(self, entries: Mapping[str, WeightEntry] | None = None) -> None:
        self._entries: dict[str, WeightEntry] = dict(entries or {})

    def __getitem__(self, name: str) -> WeightValue:
        entry = self._entries[name]
        if callable(entry):
            entry = entry()
            self._entries[name] = entry
        return entry

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def replace(self, updates: Mapping[str, WeightEntry]) -> Weights:
        """Return a new table with `updates` applied; this one is unchanged."""
        entries = dict(self._entries)
        entries.update(updates)
        return Weights(entries)

    def subset(self, names: set[str]) -> Weights:
        """Return a table of only the entries named (lazy ones stay unloaded)."""
        return Weights({k: v for k, v in self._entries.items() if k in names})

    def check_finite(self) -> None:
        """Raise InputError naming the first weight holding NaN or infinity."""
        for name in self:
            value = self[name]
            values = value.to_dense() if isinstance(value, PackedWeight) else np.asarray(value)
            if values.dtype.kind == "f" and not np.isfinite(values).all():
                bad = values[~np.isfinite(values)].flat[0]
                raise InputError(f"weight {name!r} holds {bad} (NaN or infinity)")

    def dense(self, name: str) -> np.ndarray:
        """Return weight `name` as the float32 array of the real values it holds."""
        if name not in self._entries:
            raise InputError(f"weight {name!r} has no value (shape-only graph?)")
        value = self[name]
        if isinstance(value, PackedWeight):
            return value.to_dense()
        return np.asarray(value, dtype=np.float32)

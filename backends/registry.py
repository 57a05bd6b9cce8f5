"""Backends by device kind: compile a compressed model for a hardware model, then run it.

A backend is a function `CompileRequest -> CompiledModel`, registered for one device kind
(cpu, gpu, fpga) by the module that implements it. `get_backend(kind)` imports that module on
first use, so a command that never runs a backend never pays for its kernels.

The compiled model writes its artifact (`DIR/program`: a kernel plan for cpu/gpu, the
instruction binary plus a listing for fpga, and anything else the target needs), summarises it
for report.json, and gives runners for its prefill and decode graphs (`backends.runner`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sparseflow.backends.runner import GraphRunner
from sparseflow.hw_models.schema import HardwareModel, Kind
from sparseflow.ir.errors import InputError
from sparseflow.ir.graph import Graph


@dataclass(frozen=True)
class CompileRequest:
    """What to compile: compressed prefill/decode graphs, the device, and the request shape.

    `prefill` has a symbolic or concrete prompt length; `decode` is None for encoders.
    `prompt_len` and `gen_len` size the request (FPGA length buckets, buffer plans).
    """

    prefill: Graph
    decode: Graph | None
    hw: HardwareModel
    batch: int = 1
    prompt_len: int = 128
    gen_len: int = 128


class CompiledModel(Protocol):
    """A model compiled for one target."""

    def write(self, out_dir: Path) -> list[Path]:
        """Write the target's artifacts (at least `out_dir/program`); return the paths."""
        ...

    def summary(self) -> dict:
        """Return a JSON-serialisable description of the program (kernels, sizes)."""
        ...

    def runners(self) -> tuple[GraphRunner, GraphRunner | None]:
        """Return runners for the prefill and decode graphs."""
        ...


Backend = Callable[[CompileRequest], CompiledModel]

# The module that registers each kind's backend when imported.
_MODULES = {
    Kind.CPU: "sparseflow.backends.cpu.executor",
    Kind.GPU: "sparseflow.backends.gpu.executor",
    Kind.FPGA: "sparseflow.backends.fpga.compiler",
}
_BACKENDS: dict[Kind, Backend] = {}


def register_backend(kind: Kind) -> Callable[[Backend], Backend]:
    """Register the decorated function as the backend for device `kind`."""

    def wrap(fn: Backend) -> Backend:
        if kind in _BACKENDS:
            raise ValueError(f"backend for {kind} registered twice")
        _BACKENDS[kind] = fn
        return fn

    return wrap


def get_backend(kind: Kind) -> Backend:
    """Return the backend for `kind`; InputError if none is built for it."""
    if kind not in _BACKENDS:
        try:
            importlib.import_module(_MODULES[kind])
        except ModuleNotFoundError as err:
            if err.name != _MODULES[kind]:
                raise
    if kind not in _BACKENDS:
        raise InputError(f"no {kind} backend is built yet (targets of kind {kind} cannot run)")
    return _BACKENDS[kind]


def has_backend(kind: Kind) -> bool:
    """Return whether a backend for `kind` exists."""
    try:
        get_backend(kind)
    except InputError:
        return False
    return True


def write_plan_listing(out_dir: Path, header: list[str], lines: list[str]) -> list[Path]:
    """Write `out_dir/program`, a kernel plan's readable listing (header comments, then one
    line per planned node); return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "program"
    path.write_text("\n".join(header + lines) + "\n")
    return [path]


def compile_model(request: CompileRequest) -> CompiledModel:
    """Compile `request` with the backend of its hardware model's kind."""
    return get_backend(request.hw.kind)(request)

"""Calibration: activations seen by the model's layers on calibration token ids.

Requires a prefill graph with weights. Ensures, for each selected linear weight, the input
activations X[tokens, K] of the linear that reads it (or any named values), gathered by running
the reference interpreter on the calibration ids (the user's, or `CALIBRATION_SHAPE` seeded
random ids).
Decode graphs are never calibrated: `Recipe.apply_model` reuses the prefill graph's results.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from sparseflow.ir.errors import InputError
from sparseflow.ir.graph import Graph
from sparseflow.ir.interpreter import Interpreter, prefill_inputs
from sparseflow.ir.ops import Op
from sparseflow.passes.manager import PassContext

# 8 sequences of 32 tokens: 256 calibration tokens, enough for a full-rank GPTQ Hessian on the
# small models that functional runs use; pass more through `calibration_ids` for large K.
CALIBRATION_SHAPE = (8, 32)


def calibration_ids(graph: Graph, ctx: PassContext) -> np.ndarray:
    """Return the calibration token ids [sequences, tokens] for `graph`'s vocabulary."""
    vocab = int(graph.meta_dict.get("vocab_size", 0))
    if ctx.calibration_ids is not None:
        ids = np.asarray(ctx.calibration_ids)
        if ids.ndim != 2 or ids.size == 0 or ids.min() < 0 or (vocab and ids.max() >= vocab):
            raise InputError(
                f"calibration ids must be a non-empty [sequences, tokens] array of ids in "
                f"0..{vocab - 1}, got shape {list(ids.shape)}"
            )
        return ids
    if vocab < 1:
        raise InputError(f"graph {graph.name!r} has no vocab_size to draw calibration ids from")
    return np.random.default_rng(ctx.seed).integers(0, vocab, CALIBRATION_SHAPE)


def read_calibration_ids(path: str | Path) -> np.ndarray:
    """Read token ids from a text file: one sequence per line, ids separated by spaces."""
    try:
        lines = [line.split() for line in Path(path).read_text().splitlines() if line.strip()]
        rows = [[int(t) for t in line] for line in lines]
    except OSError as err:
        raise InputError(f"calibration file {path}: cannot read ({err.strerror})") from None
    except ValueError as err:
        raise InputError(f"calibration file {path}: not integer token ids ({err})") from None
    if not rows or len({len(r) for r in rows}) != 1:
        raise InputError(f"calibration file {path}: need lines of equal length, one per sequence")
    return np.array(rows, dtype=np.int64)


def linear_inputs(graph: Graph, layers: tuple[str, ...], ctx: PassContext) -> dict[str, np.ndarray]:
    """Return {weight name: X[tokens, K]} for the linears reading the selected weights."""
    source = {n.inputs[1]: n.inputs[0] for n in graph.nodes_of(Op.LINEAR) if n.inputs[1] in layers}
    values = collect_values(graph, tuple(dict.fromkeys(source.values())), ctx)
    return {w: values[x] for w, x in source.items()}


def collect_values(graph: Graph, names: tuple[str, ...], ctx: PassContext) -> dict[str, np.ndarray]:
    """Return {value name: its values over the calibration ids, rows of the last axis}."""
    if graph.meta_dict.get("phase") == "decode":
        raise InputError(
            f"graph {graph.name!r} is a decode graph: calibrate on the prefill graph "
            "(Recipe.apply_model compresses both phases with one calibration)"
        )
    runner = Interpreter(replace(graph, outputs=names))
    batch, seq = graph.node("ids").type.shape
    all_ids = calibration_ids(graph, ctx)
    if isinstance(seq, int):  # a graph built for one prompt length: cut the ids to it
        all_ids = np.resize(all_ids, (-(-all_ids.size // seq), seq))
    chunks: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for ids in _batches(all_ids, int(batch)):
        for name, value in runner.run(prefill_inputs(graph, ids)).items():
            chunks[name].append(value.reshape(-1, value.shape[-1]))
    return {name: np.concatenate(chunks[name]) for name in names}


def _batches(ids: np.ndarray, batch: int) -> list[np.ndarray]:
    """Split ids into [batch, tokens] groups, repeating rows to fill the last one."""
    rows = -(-ids.shape[0] // batch) * batch
    padded = np.resize(ids, (rows, ids.shape[1]))
    return [padded[i : i + batch] for i in range(0, rows, batch)]

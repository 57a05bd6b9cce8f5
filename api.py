"""The library API: every command of the `sparseflow` CLI is a thin layer over these functions.

Each takes plain values (names, paths, numbers, or the records below) and returns plain
JSON-ready records; nothing prints, nothing is kept between calls. A sweep, a notebook or a
user's own orchestrator calls the same functions as the command line:

    from sparseflow import api
    model = api.compress("llama2-7b", "flightllm", prompt_len=128)   # shape-only graphs
    for clock_hz in (200e6, 225e6, 250e6):
        hw = api.load_target("u280", {"clock_hz": clock_hz})
        report = api.estimate(model, hw, gen_len=512)

`compress` is the expensive step a sweep shares between hardware points; `estimate` of a
compressed model on a target is one design point. Bad input raises `InputError` with one
line naming the file, field, option or node.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sparseflow.backends.evaluate import EvalOptions
from sparseflow.backends.evaluate import evaluate as evaluate_accuracy
from sparseflow.backends.outdir import staged_dir
from sparseflow.backends.pipeline import is_encoder
from sparseflow.hw_models.schema import HardwareModel, Kind
from sparseflow.ir.errors import InputError
from sparseflow.ir.models.zoo import load_config
from sparseflow.ir.ops import Op
from sparseflow.passes.manager import PassContext
from sparseflow.passes.recipe import Recipe
from sparseflow.simulator.design import (
    CompressedModel,
    Request,
    check_fits_model,
    compress,
    estimate,
    load_target,
    make_recipe,
    make_workload,
    parallel_overrides,
)

__all__ = [
    "CompressedModel",
    "EvalOptions",
    "Request",
    "check_fits_model",
    "compile",
    "compress",
    "default_request",
    "estimate",
    "evaluate_accuracy",
    "is_encoder",
    "load_target",
    "make_recipe",
    "make_workload",
    "parallel_overrides",
    "run",
    "show",
    "simulated_gpu",
]
PLOT_SUFFIXES = (".png", ".pdf", ".svg")
# The request `run` makes on a GPU target when no GPU is present and none was asked for:
# numba's CUDA simulator runs kernels as Python (about 5 s per tiny-llama prompt token and
# 30 s per decode step on 2 cores), so the default 128 + 128 would take hours.
SIMULATOR_REQUEST = {"prompt_len": 8, "gen_len": 2}
DEFAULT_REQUEST = {"prompt_len": 128, "gen_len": 128}


def compile(
    model: str,
    target: str | HardwareModel,
    out_dir: str | Path,
    recipe: str | Recipe | None = None,
    *,
    sparsity: str | None = None,
    quant: str | None = None,
    batch: int = 1,
    prompt_len: int = 128,
    gen_len: int = 128,
    context: PassContext | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Compress and compile `model` for `target` into `out_dir`; return report.json's record.

    The folder is written whole or not at all (see `backends.outdir`): a failure or an
    interrupt leaves what was there before.
    """
    from sparseflow.backends.pipeline import compile_to_dir

    hw = load_target(target)
    chosen = make_recipe(recipe, hw.default_recipe, sparsity, quant)
    request = Request(batch, prompt_len, gen_len)
    check_fits_model(model, request)
    out = Path(out_dir)
    with staged_dir(out, lambda d: _compiled_for(d, hw.name), force) as staging:
        report = compile_to_dir(model, hw, chosen, staging, request.as_dict(), context)
    return report


def run(
    model: str,
    target: str | HardwareModel,
    recipe: str | Recipe | None = None,
    *,
    sparsity: str | None = None,
    quant: str | None = None,
    batch: int = 1,
    prompt_len: int | None = None,
    gen_len: int | None = None,
    context: PassContext | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Run one request on the target's backend; return the run record (DESIGN.md `run`).

    Unset `prompt_len` / `gen_len` take `default_request(target)`: the full default request,
    or a short one where a GPU target runs on the CUDA simulator.
    """
    from sparseflow.backends.pipeline import run_request

    hw = load_target(target)
    chosen = make_recipe(recipe, hw.default_recipe, sparsity, quant)
    defaults = default_request(hw)
    prompt_len = defaults["prompt_len"] if prompt_len is None else prompt_len
    gen_len = defaults["gen_len"] if gen_len is None else gen_len
    request = Request(batch, prompt_len, gen_len)
    check_fits_model(model, request)
    check_host_memory(model)
    return run_request(model, hw, chosen, request.as_dict(), context or PassContext(), progress)


def simulated_gpu(hw: HardwareModel) -> bool:
    """Return whether `run` on `hw` executes its kernels on numba's CUDA simulator."""
    if hw.kind is not Kind.GPU:
        return False
    from sparseflow.backends.gpu import using_simulator

    return using_simulator()


def default_request(hw: HardwareModel) -> dict[str, int]:
    """Return the prompt and generated lengths `run` uses on `hw` when none are given."""
    return SIMULATOR_REQUEST if simulated_gpu(hw) else DEFAULT_REQUEST


def show(model: str, context: int = 512) -> dict[str, Any]:
    """Return a model's parameters, weight bytes, FLOPs and bytes per token, and layers."""
    from sparseflow.ir.models.zoo import load_model
    from sparseflow.ir.stats import model_stats

    if isinstance(context, bool) or not isinstance(context, int) or context < 1:
        raise InputError(f"--context must be an integer >= 1, got {context!r}")
    phase = "prefill" if is_encoder(model) else "decode"
    return model_stats(load_model(model, phase=phase), context=context)


def check_host_memory(model: str) -> None:
    """Raise InputError when running `model` would need more memory than the machine has.

    A run holds the dense float32 weights, their compressed copy and the backend's own
    (converted) copy: about 3 x 4 bytes per parameter.
    """
    try:
        config = load_config(model)
    except InputError:
        return
    from sparseflow.ir.models.zoo import build_graph

    params = sum(n.type.numel() for n in build_graph(config, "prefill", 1, 1).nodes_of(Op.WEIGHT))
    need = 12 * params
    have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if need > have:
        raise InputError(
            f"run {model}: needs about {need / 1e9:.1f} GB of memory for its weights "
            f"({params:,} parameters as float32, compressed and converted), this machine has "
            f"{have / 1e9:.1f} GB; use `estimate` for this model, or a smaller one"
        )


def _compiled_for(folder: Path, target_name: str) -> bool:
    """Return whether `folder` holds an earlier `compile` for the same target."""
    report = folder / "report.json"
    if report.is_symlink() or not report.is_file():
        return False
    try:
        return json.loads(report.read_text()).get("target") == target_name
    except (OSError, ValueError, AttributeError):
        return False

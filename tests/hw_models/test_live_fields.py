"""Every numeric field of every built-in hardware model is live: perturbing it changes the
estimate, or the loader rejects every perturbed value (the ISA or RTL fixes it), or it is a
limit that rejects a design beyond it, or it is on the documented descriptive list."""

from __future__ import annotations

import json
from functools import cache

import pytest

from sparseflow.hw_models.loader import hw_to_dict, list_hw, load_hw, with_overrides
from sparseflow.hw_models.schema import RECIPES_BY_KIND, Kind, field_role
from sparseflow.ir.errors import InputError
from sparseflow.ir.graph import shape_only
from sparseflow.ir.models.zoo import load_model
from sparseflow.passes.recipe import load_recipe, recipe_from_dict, shorthand_recipe
from sparseflow.simulator.cluster import estimate_cluster
from sparseflow.simulator.design import is_cluster
from sparseflow.simulator.estimate import Workload, estimate_analytical
from sparseflow.simulator.fpga_estimate import estimate_fpga

pytestmark = pytest.mark.slow  # about a minute: every field of every model, several estimates

FACTORS = (1.25, 0.8, 0.5, 2.0, 0.05, 20.0, 0.002)  # mild first; far ones reach bounds
LIMIT_FACTOR = 1e-7  # a limit this far below its value rejects the test's designs
# Fields another bound of one device masks at every valid value: live on the device named.
MASKED = {
    ("vhk158", "hbm.same_channel_efficiency"): (
        "u280",
        "the AXI port (32 B x 225 MHz = 7.2 GB/s) binds before the channel at every efficiency "
        "the loader accepts (at least cross_channel_efficiency: 0.35 x 25.6 GB/s = 9 GB/s)",
    ),
}
SMALL, LARGE = Workload(1, 16, 4), Workload(1, 512, 2)
TWO_DEVICES = (("parallel.tp", 2), ("parallel.devices", 2))  # tensor parallel over the link


# INT4 weights and activations: no built-in GPU/CPU recipe computes in INT4, this one does.
W4A4 = {
    "name": "w4a4",
    "passes": [
        {"pass": "quantize_int4", "exclude": ["lm_head"], "options": {"group_size": 32}},
        {"pass": "quantize_activations", "exclude": ["lm_head"], "options": {"bits": 4}},
    ],
}


@cache
def graphs(model: str, recipe: str, prompt: int):
    """Return the compressed (prefill, decode) graphs, or None if the recipe does not apply
    (w4a16's groups of 128 do not divide tiny-llama's K = 64)."""
    shapes = [shape_only(load_model(model, "prefill", 1, prompt)), load_model(model, "decode")]
    if recipe == "w4a4":
        r = recipe_from_dict(W4A4, "w4a4")
    elif recipe == "block-sparse":  # 90% 4x1 blocks: the sparse kernels' efficiency
        r = shorthand_recipe("block4x1:0.9", None)
    else:
        r = load_recipe(recipe)
    try:
        return r.apply_model(shapes[0], shape_only(shapes[1]))
    except InputError:
        return None


def settings(kind: Kind) -> list[tuple[str, str, Workload, tuple]]:
    """Return (model, recipe, workload, mapping) cases: tiny-llama on the FPGA event simulator;
    for the analytical models every recipe on tiny-llama and a 7B model whose prefill is
    compute bound; and tiny-llama split over two devices (where the kind has links)."""
    if kind is Kind.FPGA:
        cases = [("tiny-llama", r, SMALL, ()) for r in RECIPES_BY_KIND[kind]]
        return [*cases, ("tiny-llama", RECIPES_BY_KIND[kind][0], SMALL, TWO_DEVICES)]
    recipes = [*RECIPES_BY_KIND[kind], "w4a4", "block-sparse"]
    models = (("tiny-llama", SMALL), ("llama2-7b", LARGE))
    cases = [(m, r, w, ()) for m, w in models for r in recipes]
    return [*cases, ("tiny-llama", "dense", SMALL, TWO_DEVICES)]


def outcome(hw, case) -> str:
    """Return the report of one case as text, or the error that rejected the design."""
    model, recipe, workload, mapping = case
    compressed = graphs(model, recipe, workload.prompt_len)
    if compressed is None:
        return "recipe does not apply"
    prefill, decode = compressed
    try:
        if mapping:
            hw = with_overrides(hw, dict(mapping))
        estimate = estimate_fpga if hw.kind is Kind.FPGA else estimate_analytical
        estimate = estimate_cluster if is_cluster(hw) else estimate
        return json.dumps(estimate(prefill, decode, hw, workload, {}), sort_keys=True)
    except InputError as err:
        return f"rejected: {err}"


@cache
def base_outcome(name: str, case) -> str:
    return outcome(load_hw(name), case)


def numeric_fields(data: dict, prefix: str = ""):
    """Yield (dotted path, value) of every number or list of numbers in a model's data."""
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key in ("source", "assumption") or isinstance(value, bool):
            continue
        if isinstance(value, dict):
            yield from numeric_fields(value, path + ".")
        elif isinstance(value, int | float) or (value and isinstance(value, list)):
            yield path, value


def variants(value, factors=FACTORS):
    """Return perturbed values: scaled numbers (ints rounded, always moved), or for a list
    of modes each list without its smallest entries."""
    if isinstance(value, list):
        return [value[i:] for i in range(1, len(value))]
    out = []
    for f in factors:
        if isinstance(value, int):
            moved = round(value * f)
            out.append(moved if moved != value else value + (1 if f > 1 else -1))
        else:
            out.append(value * f)
    return out


CASES = [
    (name, path, value)
    for name in list_hw()
    for path, value in numeric_fields(hw_to_dict(load_hw(name)))
]


@pytest.mark.parametrize(("name", "path", "value"), CASES, ids=[f"{n}:{p}" for n, p, _ in CASES])
def test_field_is_live_pinned_limit_or_descriptive(name: str, path: str, value) -> None:
    if (name, path) in MASKED:
        name = MASKED[name, path][0]
        value = next(v for n, p, v in CASES if (n, p) == (name, path))
    hw = load_hw(name)
    role = field_role(hw.kind, path)
    if role == "descriptive":
        return
    cases = settings(hw.kind)
    if role == "limit":
        shrunk = variants(value, (LIMIT_FACTOR,))[0]
        try:
            small = with_overrides(hw, {path: shrunk})
        except InputError:
            return
        assert any(outcome(small, c).startswith("rejected") for c in cases), path
        return
    accepted = 0
    for moved in variants(value):
        try:
            other = with_overrides(hw, {path: moved})
        except InputError:
            continue
        accepted += 1
        if any(outcome(other, c) != base_outcome(name, c) for c in cases):
            return
    assert not accepted, f"{name}: {path} changes no estimate (wire it or list it in schema)"


def test_descriptive_and_limit_lists_name_real_fields() -> None:
    from sparseflow.hw_models.schema import DESCRIPTIVE_FIELDS, LIMIT_FIELDS

    paths = {p for _, p, _ in CASES}
    for table in (DESCRIPTIVE_FIELDS, LIMIT_FIELDS):
        for listed in (p for fields in table.values() for p in fields):
            assert any(p == listed or p.startswith(listed + ".") for p in paths), listed

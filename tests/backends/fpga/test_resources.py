"""Analytical resource model (backends/fpga/resources.py): exact DSP/RAM counts, calibrated
logic, device totals, and the fit check naming the resource that overflows."""

from __future__ import annotations

import re

import pytest

from sparseflow.backends.fpga.resources import (
    KEYS,
    check_fit,
    core_blocks,
    costs,
    estimate_resources,
)
from sparseflow.backends.fpga.rtl.generator import make_params, params_for_target
from sparseflow.backends.fpga.rtl.memories import RamStyle, map_memory
from sparseflow.hw_models.loader import load_hw, with_overrides
from sparseflow.ir.errors import InputError

U280 = load_hw("u280")


@pytest.mark.parametrize(("chains", "length"), [(1, 2), (3, 8), (64, 16), (5, 32)])
def test_dsp_is_chains_times_chain_length(chains: int, length: int) -> None:
    blocks = core_blocks(make_params(length, (2, 16), 8, n_chains=chains))
    assert sum(b.dsp * b.instances for b in blocks) == chains * length


def test_buffers_take_the_primitives_of_their_style() -> None:
    params = make_params(8, (2, 16), 8, n_chains=2, act_depth=4096, weight_depth=512,
                         bias_depth=32, out_depth=64)  # fmt: skip
    by_name = {b.name: b for b in core_blocks(params)}
    for memory in params.memories():
        mapping = map_memory(memory, params.styles[memory.name])
        block = by_name[f"{memory.name}_buffer"]
        assert (block.bram36, block.uram, block.lutram) == (
            mapping.bram36,
            mapping.uram,
            mapping.luts,
        )
    assert by_name["act_buffer"].style == RamStyle.ULTRA.value


def test_logic_grows_with_chains_and_never_goes_negative() -> None:
    small = estimate_resources(U280, make_params(16, (2, 16), 8, n_chains=8))
    large = estimate_resources(U280, make_params(16, (2, 16), 8, n_chains=16))
    assert large.core_total()["lut"] > 1.8 * small.core_total()["lut"] > 0
    assert all(b.lut >= 0 and b.ff >= 0 for b in large.blocks)
    assert set(costs()["blocks"]) == {"dsp_chain", "matrix_engine", "controller"}


def test_device_totals_are_cores_times_a_core_and_the_u280_fits() -> None:
    report = check_fit(U280)
    core, total = report.core_total(), report.total()
    assert all(total[k] == pytest.approx(3 * core[k]) for k in KEYS)
    assert total["dsp"] == 3 * 64 * 16
    util = report.utilization()
    assert all(0 < util[k] < 1 for k in KEYS)
    d = report.to_dict()
    assert d["fits"] and d["total"]["dsp"] == 3072 and d["device"]["uram"] == 960
    assert {b["name"] for b in d["blocks"]} >= {"dsp_chain", "matrix_engine", "sfu_buffer"}
    assert next(b for b in d["blocks"] if b["name"] == "sfu_buffer")["in_rtl"] is False


def test_the_rtl_params_follow_the_model() -> None:
    params = params_for_target(U280)
    e = params.engine
    assert (e.n_chains, e.chain.chain_len, e.chain.min_n) == (64, 16, 2)
    assert e.weight_depth == 4 * 2**20 // (64 * 16)  # weight buffer bytes / word bytes


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        # DSPs: the loader already refuses more chains than the part has DSPs for.
        ({"core.dsp_chains": 400}, r"field 'core.dsp_chains': 3 cores x 6400 DSPs exceed"),
        ({"fabric.uram288": 500}, r"needs 771 URAM288, the device has 500 .*fabric.uram288"),
        ({"fabric.bram36": 1000}, r"needs 1,371 BRAM36, the device has 1,000 .*fabric.bram36"),
        ({"fabric.luts": 600000}, r"needs [\d,]+ LUTs, the device has 600,000 .*fabric.luts"),
        ({"core.buffers.output_buffer_bytes": 4 * 2**20}, r"BRAM36, the device has 2,016"),
        (  # the sparse-meta buffer bounds the weight buffer's usable depth: grow both
            {
                "core.buffers.weight_buffer_bytes": 16 * 2**20,
                "core.buffers.sparse_meta_buffer_bytes": 8 * 2**20,
            },
            r"URAM288, the device has 960",
        ),
    ],
)
def test_a_design_that_does_not_fit_names_resource_need_and_total(overrides, message) -> None:
    with pytest.raises(InputError) as info:
        check_fit(with_overrides(U280, overrides))
    assert re.search(message, str(info.value))

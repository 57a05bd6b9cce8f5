"""Devices, tensor and pipeline parallelism as axes of a sweep: every mapping is evaluated or
recorded as infeasible with the option at fault, and the exported design reproduces it."""

from __future__ import annotations

import pytest

from sparseflow.ir.errors import InputError
from sparseflow.simulator.design import estimate
from sparseflow.simulator.explore import load_space, run_sweep, summarise
from sparseflow.simulator.explore.metrics import flatten

from .conftest import write_space

GPU_SPACE = {
    "model": "tiny-llama",
    "target": "a100",
    "recipe": "dense",
    "workload": {"prompt": 16, "gen": 4, "batch": 2},
    "axes": {"parallel.tp": [1, 2, 3], "parallel.pp": [1, 2]},
    "objectives": {"decode_tokens_per_s": "maximize", "energy_per_token_j": "minimize"},
    "constraints": {},
}


def test_mappings_sweep_and_bad_ones_name_the_option(tmp_path):
    run = run_sweep(load_space(write_space(tmp_path, **GPU_SPACE)), tmp_path / "out", jobs=1)
    by_mapping = {(r["values"].get("parallel.tp"), r["values"].get("parallel.pp")): r
                  for r in run.records if r["values"]}  # fmt: skip
    assert len(by_mapping) == 6
    for (tp, _pp), record in by_mapping.items():
        if tp == 3:  # tiny-llama has 4 heads
            assert record["status"] == "infeasible" and "--tp 3" in record["reason"]
        else:
            assert record["status"] == "ok", record
    fast = by_mapping[2, 1]["metrics"]["decode_tokens_per_s"]
    assert fast != by_mapping[1, 1]["metrics"]["decode_tokens_per_s"]


def test_exported_mapping_reproduces_its_metrics(tmp_path):
    """LLaMA2-7B, whose decode TP speeds up (tiny-llama's is all launch overhead)."""
    axes = {"parallel.devices": [2, 4]}
    space = load_space(write_space(tmp_path, **dict(GPU_SPACE, model="llama2-7b", axes=axes)))
    out = tmp_path / "out"
    result = summarise(space, run_sweep(space, out, jobs=1), out, None)
    assert any("parallel.devices" in row["values"] for row in result["front"])
    for row, files in zip(result["front"], result["designs"], strict=True):
        report = estimate("llama2-7b", files["target"], files["recipe"], batch=2,
                          prompt_len=16, gen_len=4)  # fmt: skip
        tp = report.get("parallel", {}).get("tp", 1)  # the base point runs on one device
        assert tp == row["values"].get("parallel.devices", 1)
        assert flatten(report) == row["metrics"]


def test_unknown_parallel_field_is_named(tmp_path):
    space = dict(GPU_SPACE, axes={"parallel.ep": [1, 2]})
    with pytest.raises(InputError, match="unknown parallel field 'ep'"):
        load_space(write_space(tmp_path, **space))

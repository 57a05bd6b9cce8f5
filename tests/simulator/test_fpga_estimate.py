"""FPGA estimate of a whole request on a small model: report keys, reuse equal to full
simulation, trace JSON, plot, capacity errors."""

import json

import pytest

from sparseflow.backends.fpga.compiler import compile_program
from sparseflow.backends.registry import CompileRequest
from sparseflow.hw_models.loader import load_hw, with_overrides
from sparseflow.ir.errors import InputError
from sparseflow.ir.models.zoo import load_model
from sparseflow.passes.recipe import load_recipe
from sparseflow.simulator.estimate import Workload, estimate_analytical
from sparseflow.simulator.fpga_estimate import check_fits, estimate_fpga, estimate_program
from sparseflow.simulator.plot import plot_report
from tests.simulator.test_estimate import REPORT_KEYS

HW = load_hw("u280")
LABELS = {"model": "tiny-llama", "target": "u280", "recipe": "flightllm"}


def graphs(model="tiny-llama", prompt=128):
    recipe = load_recipe("flightllm")
    return recipe.apply_model(
        load_model(model, "prefill", 1, prompt), load_model(model, "decode", 1)
    )


def test_report_keys_and_totals(tmp_path):
    prefill, decode = graphs()
    trace = tmp_path / "trace.json"
    report = estimate_fpga(prefill, decode, HW, Workload(1, 128, 40), LABELS, trace_path=trace)
    assert set(report) >= REPORT_KEYS
    decode_s = report["e2e_latency_s"] - report["prefill_latency_s"]
    assert report["decode_tokens_per_s"] == pytest.approx(40 / decode_s)
    assert sum(r["time_s"] for r in report["breakdown"]) == pytest.approx(report["e2e_latency_s"])
    assert sum(r["energy_j"] for r in report["breakdown"]) == pytest.approx(report["energy_j"])
    assert report["avg_power_w"] > HW.power.static_power_w
    assert 0 < report["utilization"]["memory_bandwidth"] < 1
    events = json.loads(trace.read_text())["traceEvents"]
    spans = [e for e in events if e["ph"] == "X"]
    assert spans and all(e["dur"] >= 0 and e["ts"] >= 0 for e in spans)
    assert {e["pid"] for e in spans} == {0, 1, 2}
    assert plot_report(report, tmp_path / "r.png", HW, decode).stat().st_size > 0


def test_bucket_reuse_equals_full_simulation():
    prefill, decode = graphs()
    workload = Workload(1, 128, 24)
    program = compile_program(CompileRequest(prefill, decode, HW, 1, 128, 25))
    fast = estimate_program(program, HW, workload, LABELS, 1, reuse=True)
    full = estimate_program(program, HW, workload, LABELS, 1, reuse=False)
    for key in ("prefill_latency_s", "decode_mean_step_s", "energy_j"):
        assert fast[key] == pytest.approx(full[key], rel=1e-9)


def test_plot_works_for_an_analytical_report(tmp_path):
    recipe = load_recipe("dense")
    prefill, decode = recipe.apply_model(
        load_model("tiny-llama", "prefill", 1, 16), load_model("tiny-llama", "decode", 1)
    )
    a100 = load_hw("a100")
    report = estimate_analytical(prefill, decode, a100, Workload(1, 16, 4), LABELS)
    assert plot_report(report, tmp_path / "a.png", a100, decode).exists()


def test_model_that_does_not_fit_the_hbm_is_named():
    _, decode = graphs()
    small = with_overrides(HW, {"hbm.bytes_per_channel": 1024})
    with pytest.raises(
        InputError, match=r"u280 \(built-in\) \(overrides\): field 'hbm.bytes_per_channel'"
    ):
        check_fits(small, decode, Workload(1, 128, 8))


def test_report_has_resources_and_a_power_band():
    prefill, decode = graphs()
    report = estimate_fpga(prefill, decode, HW, Workload(1, 128, 8), LABELS)
    low, high = report["avg_power_w_range"]
    assert low < report["avg_power_w"] < high
    assert sum(report["power_w"].values()) == pytest.approx(report["avg_power_w"])
    split = report["energy_split_j"]
    assert sum(v for k, v in split.items() if k != "total_j") == pytest.approx(split["total_j"])
    assert split["total_j"] == pytest.approx(report["energy_j"])
    assert report["power_w"]["static"] == HW.power.static_power_w
    resources = report["resources"]
    assert resources["fits"] and resources["total"]["dsp"] == 3 * 64 * 16
    assert 0 < resources["utilization"]["lut"] < 1


def test_a_design_that_does_not_fit_is_refused_before_simulating():
    prefill, decode = graphs()
    small = with_overrides(HW, {"fabric.luts": 100000})
    with pytest.raises(InputError, match="LUTs, the device has 100,000"):
        estimate_fpga(prefill, decode, small, Workload(1, 128, 8), LABELS)

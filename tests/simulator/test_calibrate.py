"""Calibration: recovering known device parameters from synthetic measurements, held-out errors."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import yaml

from sparseflow.hw_models.loader import hw_from_dict, load_hw, with_overrides
from sparseflow.simulator.calibrate import calibrate, calibration_yaml, identifiable
from sparseflow.simulator.measurements import Measurement
from sparseflow.simulator.predict import Predictor
from tests.ir.hf_configs import PUBLIC_CONFIGS

# Four Llama-2-7B layers: decode streams weights (not launch-bound) and a fit evaluates fast.
MODEL_FIELDS = {**PUBLIC_CONFIGS["llama2-7b"], "num_hidden_layers": 4}
# Requests that exercise both ends: long batched prompts (compute), decode (memory), power.
REQUESTS = [
    (8, 512, 1, ("ttft_s", "avg_power_w")),
    (4, 1024, 1, ("ttft_s",)),
    (1, 128, 16, ("decode_tokens_per_s", "avg_power_w")),
    (1, 1024, 16, ("decode_tokens_per_s",)),
    (4, 256, 16, ("e2e_s", "avg_power_w")),
]
TRUTH = {
    "efficiency.gemm_compute_efficiency": 0.6,
    "efficiency.memory_bandwidth_efficiency": 0.65,
    # Low enough that no kernel reaches the power limit, where time no longer shows efficiency.
    "power.busy_power_w": 110.0,
}


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Return the path of a config.json with MODEL_FIELDS."""
    path = tmp_path_factory.mktemp("model") / "config.json"
    path.write_text(json.dumps(MODEL_FIELDS))
    return str(path)


def synthetic_rows(model: str, truth, noise: float, seed: int = 0) -> list[Measurement]:
    """Return measurements of REQUESTS predicted on `truth`, times (1 + noise x N(0, 1))."""
    rng = np.random.default_rng(seed)
    blank = [
        Measurement("synthetic.csv", line, model, "dense", b, p, g, tuple((m, 1.0) for m in ms))
        for line, (b, p, g, ms) in enumerate(REQUESTS, 2)
    ]
    predicted = Predictor(truth, blank).predict(truth, range(len(blank)), split=True)
    noisy = []
    for row, values in zip(blank, predicted, strict=True):
        names = [m for m, _ in row.metrics]
        measured = tuple(
            (m, v * (1 + noise * rng.standard_normal())) for m, v in zip(names, values, strict=True)
        )
        noisy.append(dataclasses.replace(row, metrics=measured))
    return noisy


def test_perturbed_device_is_recovered_within_10_percent_under_3_percent_noise(model: str):
    base = load_hw("a100")
    truth = with_overrides(base, TRUTH)
    result = calibrate(base, synthetic_rows(model, truth, noise=0.03), leave_one_out=False)
    fitted = {p.path: p for p in result.parameters}
    for path, value in TRUTH.items():
        assert fitted[path].fitted, path
        assert fitted[path].value == pytest.approx(value, rel=0.10), path
        assert fitted[path].prior != pytest.approx(value, rel=0.10)  # the fit had work to do
    assert max(abs(r.fit_error) for r in result.results) < 0.1


def test_noise_free_measurements_are_fitted_exactly(model: str):
    base = load_hw("a100")
    truth = with_overrides(base, TRUTH)
    result = calibrate(base, synthetic_rows(model, truth, noise=0.0), leave_one_out=False)
    assert max(abs(r.fit_error) for r in result.results) < 2e-3


def test_leave_one_out_predicts_each_row_without_it(model: str):
    base = load_hw("a100")
    truth = with_overrides(base, {"efficiency.memory_bandwidth_efficiency": 0.6})
    rows = [r for r in synthetic_rows(model, truth, noise=0.0) if r.gen > 1][:2]
    candidates = ["efficiency.memory_bandwidth_efficiency"]
    result = calibrate(base, rows, candidates)
    # Both rows determine the same field: each one's held-out prediction is right.
    for r in result.results:
        assert r.held_out_error == pytest.approx(0, abs=2e-3)
    alone = calibrate(base, rows[:1], candidates)
    assert all(math.isnan(r.held_out) for r in alone.results)  # nothing left to fit


def test_check_rows_are_predicted_but_never_fitted(model: str):
    base = load_hw("a100")
    truth = with_overrides(base, {"efficiency.memory_bandwidth_efficiency": 0.6})
    rows = [r for r in synthetic_rows(model, truth, noise=0.0) if r.gen > 1][:2]
    wrong = dataclasses.replace(rows[1], role="check", metrics=(("decode_tokens_per_s", 1.0),))
    result = calibrate(base, [rows[0], wrong], ["efficiency.memory_bandwidth_efficiency"])
    fitted = result.parameters[0].value
    assert fitted == pytest.approx(0.6, rel=2e-3)
    check = [r for r in result.results if r.row.role == "check"][0]
    assert check.held_out == check.fitted and check.fit_error > 10


def test_fields_the_rows_do_not_touch_or_cannot_separate_are_not_fitted():
    # Column 1 is zero; columns 0 and 2 are parallel in the first two rows, the third row
    # separates them, or (0.1) barely does.
    separated = np.array([[1.0, 0.0, 2.0], [0.5, 0.0, 1.0], [0.0, 0.0, 1.0]])
    assert identifiable(separated) == [0, 2]
    barely = separated * [1.0, 1.0, 1.0]
    barely[2, 2] = 0.1
    assert identifiable(barely) == [2]
    assert identifiable(np.zeros((2, 2))) == []
    assert identifiable(np.array([[1.0, 2.0]])) == [1]  # one value determines one field


def test_calibrated_yaml_loads_and_cites_the_fit(model: str):
    base = load_hw("a100")
    truth = with_overrides(base, {"efficiency.memory_bandwidth_efficiency": 0.6})
    rows = [r for r in synthetic_rows(model, truth, noise=0.0) if r.gen > 1][:2]
    candidates = [
        "efficiency.memory_bandwidth_efficiency",
        "efficiency.int8_gemm_compute_efficiency",
    ]
    result = calibrate(base, rows, candidates)
    text = calibration_yaml(result, "measured.csv", "my-a100", ["from a test"])
    assert text.startswith("# from a test\n")
    hw = hw_from_dict(yaml.safe_load(text), "calibrated.yaml")
    assert hw.name == "my-a100"
    assert hw.efficiency.memory_bandwidth_efficiency == pytest.approx(0.6, rel=2e-3)
    note = hw.sources["efficiency.memory_bandwidth_efficiency"]
    prior = base.efficiency.memory_bandwidth_efficiency
    assert "measured.csv lines 4, 5" in note and f"prior {prior:.4g}" in note
    assert "kept" in hw.sources["efficiency.int8_gemm_compute_efficiency"]  # no int8 rows
    assert hw.peaks == base.peaks and hw.memory == base.memory  # organisation untouched


def test_fpga_power_is_fitted_without_touching_the_organisation():
    base = load_hw("u280")
    truth = with_overrides(base, {"power.static_power_w": 35.0})
    blank = [
        Measurement("u280.csv", 2, "tiny-llama", "flightllm", 1, 16, 8, (("avg_power_w", 1.0),))
    ]
    measured = Predictor(truth, blank).predict(truth, [0])
    rows = [dataclasses.replace(blank[0], metrics=(("avg_power_w", float(measured[0])),))]
    result = calibrate(base, rows, leave_one_out=False)
    fitted = {p.path: p for p in result.parameters}
    assert fitted["power.static_power_w"].fitted
    assert fitted["power.static_power_w"].value == pytest.approx(35.0, rel=1e-3)
    assert result.hw.core == base.core and result.hw.clock_hz == base.clock_hz
    assert result.hw.hbm.channels == base.hbm.channels


def test_cpu_bandwidth_efficiency_is_recovered(model: str):
    base = load_hw("host-cpu")
    truth = with_overrides(base, {"efficiency.memory_bandwidth_efficiency": 0.6})
    blank = [
        Measurement("cpu.csv", 2 + i, model, "dense", 1, prompt, 4, (("decode_tokens_per_s", 1.0),))
        for i, prompt in enumerate((64, 512))
    ]
    values = Predictor(truth, blank).predict(truth, [0, 1])
    rows = [
        dataclasses.replace(r, metrics=(("decode_tokens_per_s", float(v)),))
        for r, v in zip(blank, values, strict=True)
    ]
    result = calibrate(base, rows, ["efficiency.memory_bandwidth_efficiency"])
    assert result.parameters[0].value == pytest.approx(0.6, rel=2e-3)
    assert all(abs(r.held_out_error) < 2e-3 for r in result.results)

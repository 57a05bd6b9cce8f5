"""The shipped measurement files read cleanly, and each calibrated model cites its fit rows."""

from __future__ import annotations

import re

import pytest

from sparseflow.hw_models.loader import HW_DIR, load_hw
from sparseflow.simulator.measurements import read_measurements

MEASURED = sorted(p.stem for p in (HW_DIR / "measurements").glob("*.csv"))


def test_the_measured_targets_are_the_calibrated_gpus():
    assert MEASURED == ["a100", "a100-40gb", "h100", "v100s"]


@pytest.mark.parametrize("target", MEASURED)
def test_a_calibrated_model_cites_exactly_its_fit_rows(target: str):
    rows = read_measurements(HW_DIR / "measurements" / f"{target}.csv")
    assert all(r.source for r in rows)  # every measured row names where it comes from
    fit_lines = [r.line for r in rows if r.role == "fit"]
    hw = load_hw(target)
    fitted = {path: note for path, note in hw.sources.items() if "sparseflow calibrate" in note}
    assert fitted, f"{target}: no fitted field"
    for note in fitted.values():
        cited = re.search(rf"{target}\.csv lines ([\d, ]+)", note).group(1)
        assert [int(n) for n in cited.split(",")] == fit_lines
    prior = load_hw(HW_DIR / "measurements" / f"{target}.prior.yaml")
    assert prior.peaks == hw.peaks and prior.memory == hw.memory  # organisation untouched

"""The report keys a space may name are the numbers real reports carry, kind by kind; judging
a point against its constraints."""

import pytest

from sparseflow.hw_models.schema import Kind
from sparseflow.simulator.design import estimate
from sparseflow.simulator.explore.metrics import (
    INPUT_KEYS,
    REPORT_METRICS,
    Constraint,
    Objective,
    flatten,
    judge,
)


@pytest.mark.parametrize("target, kind", [("u280", Kind.FPGA), ("a100", Kind.GPU),
                                          ("host-cpu", Kind.CPU)])  # fmt: skip
def test_listed_keys_are_exactly_the_reports_numbers(target, kind):
    report = estimate("tiny-llama", target, prompt_len=16, gen_len=4)
    numbers = flatten(report)
    assert sorted(numbers) == sorted(REPORT_METRICS[kind])
    assert not set(INPUT_KEYS) & set(numbers) and report["batch"] == 1
    assert all(isinstance(v, float) for v in numbers.values())


def test_judge_bounds_and_violation():
    metrics = {"avg_power_w": 80.0, "tokens_per_j": 2.0, "energy_j": 5.0}
    objectives = (Objective("tokens_per_j", maximize=True),)
    bounds = (Constraint("avg_power_w", None, 75.0), Constraint("energy_j", 1.0, 10.0))
    verdict = judge(metrics, objectives, bounds)
    assert verdict["objectives"] == {"tokens_per_j": 2.0}
    assert verdict["constraints"] == {"avg_power_w": 80.0, "energy_j": 5.0}
    assert verdict["violation"] == pytest.approx(5 / 75)
    assert verdict["reason"] == "violates avg_power_w <= 75: 80"
    below = judge({**metrics, "avg_power_w": 70.0, "energy_j": 0.5}, objectives, bounds)
    assert below["violation"] == pytest.approx(0.5) and "1 <= energy_j <= 10" in below["reason"]
    assert judge({**metrics, "avg_power_w": 75.0}, objectives, bounds)["reason"] is None
    assert objectives[0].cost(2.0) == -2.0

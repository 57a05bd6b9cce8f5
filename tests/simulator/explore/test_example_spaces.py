"""The example spaces load, and the U280 space holds at least 100 points that the loader
accepts and whose model fits the HBM: counted on its definition, without running it."""

from pathlib import Path

import pytest

from sparseflow.ir.errors import InputError
from sparseflow.simulator.design import compress
from sparseflow.simulator.estimate import Workload
from sparseflow.simulator.explore import load_space
from sparseflow.simulator.explore.points import design, planned_points
from sparseflow.simulator.fpga_estimate import check_fits

SPACES = Path(__file__).resolve().parents[3] / "examples" / "spaces"


@pytest.mark.parametrize("name", ["u280", "u280-quick", "gpu", "gpu-parallel", "cpu"])
def test_example_spaces_load(name):
    space = load_space(SPACES / f"{name}.yaml")
    assert space.size >= 12 and len(space.objectives) >= 2


def test_u280_space_has_100_feasible_points():
    space = load_space(SPACES / "u280.yaml")
    decode = {}
    feasible = 0
    for point in planned_points(space, None, 0)[1:]:
        try:
            d = design(space, point)
            if d.recipe not in decode:
                decode[d.recipe] = compress(d.model, d.recipe, prompt_len=128).decode
            check_fits(d.hw, decode[d.recipe], Workload(1, 128, 512))
        except InputError:
            continue
        feasible += 1
    assert len(decode) == 2 and feasible >= 100, feasible

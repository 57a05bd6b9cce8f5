"""A small FPGA space on tiny-llama: 3 HBM channel counts (one the loader rejects) x 3 clocks x
2 flightllm densities, and a power bound some points break."""

from pathlib import Path

import pytest
import yaml

ENERGY_BOUND_J = 0.0012  # between the 200 MHz and the 300 MHz points
TINY_SPACE = {
    "model": "tiny-llama",
    "target": "u280",
    "workload": {"prompt": 32, "gen": 8},
    "axes": {
        "hbm.channels": [2, 16, 32],  # 2 < the u280's 3 cores: rejected by the loader
        "clock_hz": {"range": [200.0e6, 300.0e6], "step": 50.0e6},
        "recipe.sparsify_flightllm.density": [0.25, 0.5],
    },
    "objectives": {"decode_tokens_per_s": "maximize", "avg_power_w": "minimize"},
    "constraints": {"energy_per_token_j": {"max": ENERGY_BOUND_J}},
}


def write_space(folder: Path, **changes) -> Path:
    """Write the tiny space (with top-level fields replaced) to folder/space.yaml."""
    path = folder / "space.yaml"
    path.write_text(yaml.safe_dump({**TINY_SPACE, **changes}, sort_keys=False))
    return path


@pytest.fixture
def tiny_space(tmp_path: Path) -> Path:
    return write_space(tmp_path)

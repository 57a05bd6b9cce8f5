"""Check the CUDA target selection and the launch-configuration helper."""

import os
import subprocess
import sys

import pytest

from sparseflow.backends.gpu import launch, using_simulator
from sparseflow.backends.gpu.device import SIMULATOR_ENV, probe_gpu
from sparseflow.ir.errors import InputError


def test_simulator_active_exactly_when_no_gpu() -> None:
    if os.environ.get(SIMULATOR_ENV) == "1":
        assert using_simulator()
    else:
        assert using_simulator() is not probe_gpu()


def test_selection_survives_numba_imported_first() -> None:
    env = {k: v for k, v in os.environ.items() if k != SIMULATOR_ENV}
    code = (
        "import numba\n"
        "from sparseflow.backends.gpu import using_simulator\n"
        "from sparseflow.backends.gpu.device import probe_gpu\n"
        "assert using_simulator() is not probe_gpu()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_launch_helpers_cover_every_output() -> None:
    config = launch.tiled_2d(rows=33, cols=17, tile=8)
    assert config.grid == (3, 5)
    assert config.block == (8, 8)
    assert config.grid[0] * 8 >= 17 and config.grid[1] * 8 >= 33
    assert launch.flat_1d(1, 64).grid == (1,)
    assert launch.flat_1d(129, 64).grid == (3,)
    assert launch.per_row(7, 32).threads == 7 * 32


@pytest.mark.parametrize("value", [0, 3, 2048, -4])
def test_block_size_must_be_power_of_two(value: int) -> None:
    with pytest.raises(InputError, match="power of two"):
        launch.check_block_size("threads", value)


@pytest.mark.skipif(probe_gpu(), reason="only without a GPU can numba.cuda be set up wrongly")
def test_numba_cuda_imported_for_hardware_first_is_reported() -> None:
    env = {k: v for k, v in os.environ.items() if k != SIMULATOR_ENV}
    code = "import numba.cuda\nimport sparseflow.backends.gpu\n"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode != 0
    assert "CudaSetupError: numba.cuda was imported before sparseflow.backends.gpu" in done.stderr

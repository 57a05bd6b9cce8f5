"""Row-wise numba kernels (GELU, LayerNorm) against the ops' numpy references."""

from __future__ import annotations

import numpy as np
import pytest

from sparseflow.backends.cpu.pointwise import gelu, layernorm
from sparseflow.ir.ops import Op

SHAPES = [(1, 7), (2, 3, 33), (4, 1, 5, 128)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_matches_reference(shape, approximate):
    x = 3 * np.random.default_rng(len(shape)).standard_normal(shape).astype(np.float32)
    expected = Op.GELU.reference([x], {"approximate": approximate})
    np.testing.assert_allclose(gelu(x, approximate), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape", SHAPES)
def test_layernorm_matches_reference(shape):
    rng = np.random.default_rng(shape[-1])
    x = (rng.standard_normal(shape) * 4 + 2).astype(np.float32)
    w, b = rng.standard_normal((2, shape[-1])).astype(np.float32)
    expected = Op.LAYERNORM.reference([x, w, b], {"eps": 1e-12})
    np.testing.assert_allclose(layernorm(x, w, b, 1e-12), expected, rtol=1e-4, atol=1e-5)

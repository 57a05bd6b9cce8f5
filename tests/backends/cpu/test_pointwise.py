"""Row-wise numba kernels (GELU, LayerNorm, softmax) against the ops' numpy references."""

from __future__ import annotations

import numpy as np
import pytest

from sparseflow.backends.cpu.pointwise import gelu, layernorm, softmax_last
from sparseflow.ir.ops import get_op

SHAPES = [(1, 7), (2, 3, 33), (4, 1, 5, 128)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_matches_reference(shape, approximate):
    x = 3 * np.random.default_rng(len(shape)).standard_normal(shape).astype(np.float32)
    expected = get_op("gelu").reference([x], {"approximate": approximate})
    np.testing.assert_allclose(gelu(x, approximate), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape", SHAPES)
def test_layernorm_matches_reference(shape):
    rng = np.random.default_rng(shape[-1])
    x = (rng.standard_normal(shape) * 4 + 2).astype(np.float32)
    w, b = rng.standard_normal((2, shape[-1])).astype(np.float32)
    expected = get_op("layernorm").reference([x, w, b], {"eps": 1e-12})
    np.testing.assert_allclose(layernorm(x, w, b, 1e-12), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
def test_softmax_matches_reference_with_masked_entries(shape):
    rng = np.random.default_rng(shape[0])
    x = (rng.standard_normal(shape) * 5).astype(np.float32)
    x[..., -1] = np.finfo(np.float32).min
    x.reshape(-1, shape[-1])[0] = np.finfo(np.float32).min  # a fully masked row
    expected = get_op("softmax").reference([x], {})
    np.testing.assert_allclose(softmax_last(x), expected, rtol=1e-5, atol=1e-7)

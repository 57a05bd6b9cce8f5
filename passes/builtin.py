"""Import every module that registers passes, so `get_pass` sees them all."""

from sparseflow.passes import activations, quantize_weights, smoothquant, sparsify  # noqa: F401

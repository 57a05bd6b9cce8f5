"""Import every module that registers passes, so `get_pass` sees them all."""

from sparseflow.passes import activations, sparsify  # noqa: F401

"""Import every module that registers passes, so `get_pass` sees them all."""

from sparseflow.passes import (  # noqa: F401
    activations,
    precision,
    quantize_weights,
    smoothquant,
    sparsify,
    untie,
)

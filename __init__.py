"""sparseflow: a hardware co-design simulator and kernel compiler for sparse and quantized
transformers."""

__version__ = "0.1.0"

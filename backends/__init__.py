"""Backends: compile a compressed model for a target and run it for real.

- `registry`: the backend of each device kind (`compile_model`, `get_backend`).
- `pipeline`: the compile and run pipelines behind `sparseflow compile` / `run`.
- `runner`: one request on any graph runner (prefill, then greedy decode with a KV cache).
- `cpu/`: numba SpMM and quantized kernels and their executor.
- `gpu/`: numba.cuda kernels and their executor (CUDA simulator without a GPU).
- `fpga/`: the FlightLLM-style accelerator: ISA, compiler, engine model, functional model,
  and `fpga/rtl/`, the SystemVerilog generator and its cocotb benches.

Imports: sparseflow.ir, sparseflow.passes and sparseflow.hw_models; never the simulator.
"""

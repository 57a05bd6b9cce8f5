"""The FlightLLM-style FPGA accelerator: instruction set, compiler and bit-accurate models.

- `isa`: instruction formats, binary encoding and listing.
- `engine_model`: the sparse DSP chain and matrix engine, bit for bit and cycle for cycle
  (the specification the RTL is tested against).
- `layout`: engine, buffer plan, weight tiles and HBM regions of one target.
- `lower`: graph nodes -> per-core instruction lists; `compiler`: the whole program
  (`CompileRequest -> Program`) with its length buckets; `program`: the compiled program.
- `functional`: runs a program's arithmetic bit-accurately (the `run` backend).
- `rtl/`: SystemVerilog generator, Verilator runner and cocotb benches.

Imports: sparseflow.ir, sparseflow.passes, sparseflow.hw_models and sparseflow.backends.
"""

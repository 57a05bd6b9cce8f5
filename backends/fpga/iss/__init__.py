"""Instruction-set simulator of the FlightLLM-style accelerator: executes program bytes.

- `memory`: word memories with their access history (`Tracked`) and the execution errors.
- `machine`: the machine state (HBM image, per-core ACT/WEIGHT/BIAS/OUT buffers, the
  device-wide SFU buffer) and the dispatcher: in-order queues per unit, token semaphores and
  barriers as `isa` specifies, queues interleaved in a seeded random legal order, every
  access checked against the happens-before order the tokens and barriers give.
- `units`: what LOAD, STORE and MM/MV do to the state; `sfu`: the SFU ops.
- `host`: the host's side: the HBM image (packed weights at the compiler's addresses,
  constants, tables, the KV cache), host I/O (embedding rows in, logits out) and the decode
  relocation; `runner`: graph runners for `sparseflow run` executing every bucket's program.

What it does not model: time (the event simulator's job, `simulator.fpga_engine`).
"""

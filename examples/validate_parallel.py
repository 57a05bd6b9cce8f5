"""Multi-GPU estimates next to published measurements, and Llama-2-70B's TP = 2/4/8 scaling.

Every measured row below names its source; none of them was used to set a parameter (the
links' figures come from datasheets and collective benchmarks, the GPUs' from their own
single-device calibration). FP16 everywhere (`--recipe dense`), batch 1.

    python examples/validate_parallel.py

Sources:
- S1: LLM-Inference-Bench (Argonne, arXiv 2411.00136), raw CSVs in argonne-lcf/LLM-Inference-
  Bench (`Plots/All_results.csv`, `InferenceGraphPlotter/data/Parallelism/All_results.csv`):
  end-to-end latency of one request, "Input Output Length" n = n prompt and n generated
  tokens. A100: most likely A100-SXM4-40GB (ALCF Polaris, 4 GPUs per node, as the GPU
  calibration notes argue); H100: the variant is not stated.
- S2: NVIDIA TensorRT-LLM `docs/source/performance.md`, release 0.5 "Low Latency" table:
  A100 (FP16), first-token latency at batch 1, input length 128 and 2048 (A100 SXM 80GB per
  the calibration notes). Its H100 rows are FP8 and its TP=2/8 rows large-batch throughput,
  so they are not compared here.
"""

from __future__ import annotations

from sparseflow import api
from sparseflow.ir.errors import InputError

# (model, target, tp, pp, prompt = gen length, framework, measured key, value, source)
PUBLISHED = [
    ("llama2-70b", "a100-40gb", 4, 1, 128, "TensorRT-LLM", "e2e_latency_s", 4.240, "S1"),
    ("llama2-70b", "a100-40gb", 4, 1, 128, "vLLM", "e2e_latency_s", 4.285, "S1"),
    ("llama2-70b", "a100-40gb", 4, 1, 128, "DeepSpeed-MII", "e2e_latency_s", 5.273, "S1"),
    ("llama2-70b", "h100", 4, 1, 128, "TensorRT-LLM", "e2e_latency_s", 2.309, "S1"),
    ("llama2-70b", "h100", 4, 1, 128, "vLLM", "e2e_latency_s", 2.370, "S1"),
    ("llama2-70b", "a100-40gb", 4, 1, 1024, "TensorRT-LLM", "e2e_latency_s", 36.928, "S1"),
    ("llama2-70b", "a100-40gb", 1, 4, 1024, "TensorRT-LLM", "e2e_latency_s", 110.197, "S1"),
    ("llama2-70b", "a100", 4, 1, 128, "TensorRT-LLM 0.5", "prefill_latency_s", 0.047, "S2"),
    ("llama2-70b", "a100", 4, 1, 2048, "TensorRT-LLM 0.5", "prefill_latency_s", 0.377, "S2"),
    ("llama2-7b", "a100-40gb", 1, 1, 128, "TensorRT-LLM", "e2e_latency_s", 1.510, "S1"),
    ("llama2-7b", "a100-40gb", 2, 1, 128, "TensorRT-LLM", "e2e_latency_s", 0.993, "S1"),
    ("llama2-7b", "a100-40gb", 4, 1, 128, "TensorRT-LLM", "e2e_latency_s", 0.740, "S1"),
    ("llama2-7b", "a100-40gb", 4, 1, 1024, "TensorRT-LLM", "e2e_latency_s", 6.500, "S1"),
    ("mixtral-8x7b", "a100-40gb", 4, 1, 128, "TensorRT-LLM", "e2e_latency_s", 1.094, "S1"),
    ("mixtral-8x7b", "a100-40gb", 1, 4, 128, "TensorRT-LLM", "e2e_latency_s", 2.799, "S1"),
]
SCALING_TARGETS = ("a100", "h100")
SCALING_TP = (1, 2, 4, 8)


def estimate(model: str, target: str, tp: int, pp: int, length: int) -> dict:
    """Return the FP16 estimate of one batch-1 request of `length` + `length` tokens."""
    hw = api.load_target(target, api.parallel_overrides(tp=tp, pp=pp))
    return api.estimate(model, hw, "dense", prompt_len=length, gen_len=length)


def compare() -> list[float]:
    """Print every published row next to the estimate; return the relative errors."""
    print("model         target     tp pp  in/out  framework           key        "
          "measured  estimate  error  source")  # fmt: skip
    errors = []
    for model, target, tp, pp, length, framework, key, value, source in PUBLISHED:
        ours = estimate(model, target, tp, pp, length)[key]
        errors.append(ours / value - 1)
        name = "e2e s" if key == "e2e_latency_s" else "TTFT s"
        print(f"{model:<13} {target:<10} {tp:>2} {pp:>2}  {length:>4}    {framework:<18} "
              f"{name:<9} {value:>8.3f}  {ours:>8.3f}  {errors[-1]:+6.1%}  {source}")  # fmt: skip
    return errors


def scaling() -> None:
    """Print Llama-2-70B's 128 + 128 request over TP = 1, 2, 4, 8 GPUs of each target."""
    print("\ntarget  tp  TTFT ms  step ms  tok/s  speedup  all-reduce ms  memory GB/GPU")
    for target in SCALING_TARGETS:
        base = None
        for tp in SCALING_TP:
            try:
                r = estimate("llama2-70b", target, tp, 1, 128)
            except InputError as err:
                print(f"{target:<7} {tp:>2}  does not fit: {str(err)[:60]}...")
                continue
            base = base or r["decode_mean_step_s"]
            comm = r.get("communication", {"all_reduce_time_s": 0.0})
            memory = max(d["memory_bytes"] for d in r["devices"]) if "devices" in r else 0
            step_s = r["decode_mean_step_s"]
            print(f"{target:<7} {tp:>2}  {r['prefill_latency_s'] * 1e3:7.1f}  "
                  f"{step_s * 1e3:7.2f}  {r['decode_tokens_per_s']:5.1f}  {base / step_s:7.2f}  "
                  f"{comm['all_reduce_time_s'] * 1e3:13.1f}  {memory / 1e9:13.1f}")  # fmt: skip


def main() -> None:
    """Print the comparison and the scaling table."""
    compare()
    scaling()


if __name__ == "__main__":
    main()

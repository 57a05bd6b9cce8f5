"""Compile every GPU kernel to PTX for sm_80 without a GPU and print a JSON verdict per kernel.

Run as a script in a process with NUMBA_ENABLE_CUDASIM=0. Needs NVVM and NVRTC (the CUDA
toolkit, or the nvidia-nvvm / nvidia-cuda-nvrtc wheels); exits with status 3 when they are
missing. Device functions normally ask the driver for the compute capability, so the probe
answers that question itself: compiling needs no driver, only those libraries.
"""

import importlib
import json
import sys
import types

from numba import cuda
from numba import types as nt

MISSING_TOOLKIT = 3
TARGET_CC = (8, 0)  # A100 (Ampere); any real target works, sm_80 is numba-cuda's common one


def _array(dtype: nt.Type, ndim: int) -> nt.Array:
    return nt.Array(dtype, ndim, "C")


def _cases() -> dict[str, tuple[object, tuple]]:
    mod = {
        n: importlib.import_module(f"sparseflow.backends.gpu.{n}")
        for n in ("dense_gemm", "sparse24", "int8", "int4", "norms", "rotary", "attention")
    }
    f32, f16, u8, i32 = nt.float32, nt.float16, nt.uint8, nt.int32
    a = _array
    int4_args = (a(u8, 2), a(f32, 2), a(u8, 2), nt.int64)
    return {
        "gemm_fp32": (mod["dense_gemm"].gemm_kernel(16), (a(f32, 2), a(f32, 2), a(f32, 2))),
        "gemm_fp16": (mod["dense_gemm"].gemm_kernel(16), (a(f16, 2), a(f16, 2), a(f32, 2))),
        "spmm_24": (
            mod["sparse24"].spmm_24_kernel(16),
            (a(f16, 2), a(f16, 2), a(nt.uint32, 2), a(f32, 2)),
        ),
        "int8_gemm": (
            mod["int8"].int8_gemm_kernel(16),
            (a(nt.int8, 2), a(f32, 1), a(nt.int8, 2), a(f32, 1), a(i32, 2), a(f32, 2)),
        ),
        "int4_gemv": (mod["int4"].int4_gemv_kernel(128), (a(f32, 1), *int4_args, a(f32, 1))),
        "int4_gemm": (mod["int4"].int4_gemm_kernel(16), (a(f16, 2), *int4_args, a(f32, 2))),
        "softmax": (mod["norms"].softmax_kernel(128), (a(f32, 2), a(f32, 2))),
        "layernorm": (
            mod["norms"].layernorm_kernel(128),
            (a(f16, 2), a(f32, 1), a(f32, 1), f32, a(f32, 2)),
        ),
        "rmsnorm": (mod["norms"].rmsnorm_kernel(128), (a(f32, 2), a(f32, 1), f32, a(f32, 2))),
        "rope": (mod["rotary"].rope_kernel(), (a(f32, 3), a(nt.int64, 1), a(f32, 1), a(f32, 3))),
        "attention_split": (
            mod["attention"].split_kernel(128),
            (a(f16, 3), a(f16, 4), a(f16, 4), a(i32, 1), f32, a(f32, 3), a(f32, 3), a(f32, 4)),
        ),
        "attention_merge": (
            mod["attention"].merge_kernel(128),
            (a(f32, 3), a(f32, 3), a(f32, 4), a(f32, 3)),
        ),
    }


def _compile(kernel: object, signature: tuple) -> dict[str, object]:
    try:
        ptx, _ = cuda.compile_ptx(kernel.py_func, signature, cc=TARGET_CC)
    except Exception as error:  # report every failure as data, the test decides
        return {"ok": False, "error": f"{type(error).__name__}: {error}"[:800]}
    fp64 = [line.strip() for line in ptx.splitlines() if ".f64" in line and ".reg" not in line]
    return {"ok": True, "fp64_instructions": len(fp64)}


def main() -> int:
    """Print {kernel: verdict} as JSON; return MISSING_TOOLKIT without NVVM/NVRTC."""
    import numba.cuda.dispatcher as dispatcher

    dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=TARGET_CC)
    verdicts = {}
    for name, (kernel, signature) in _cases().items():
        verdicts[name] = _compile(kernel, signature)
        error = str(verdicts[name].get("error", ""))
        if any(word in error for word in ("NotFound", "SupportError", "cannot be found")):
            print(error)
            return MISSING_TOOLKIT
    print(json.dumps(verdicts))
    return 0


if __name__ == "__main__":
    sys.exit(main())

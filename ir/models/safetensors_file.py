"""Read tensors from `.safetensors` files without loading whole files.

Format (https://huggingface.co/docs/safetensors): an 8-byte little-endian header length n, a
JSON header of n bytes mapping each tensor name to {dtype, shape, data_offsets: [begin, end]}
(offsets into the data that follows the header), optional `__metadata__`, then the data.
Headers are read eagerly (to check names and shapes); tensor data is read when asked for.
BF16 is widened to float32 by shifting its bits into the high half of a float32.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sparseflow.ir.errors import InputError

_NUMPY = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
    "BOOL": np.bool_,
}  # fmt: skip
_MAX_HEADER_BYTES = 100_000_000  # the limit the safetensors library itself enforces


@dataclass(frozen=True)
class TensorRecord:
    """Where one tensor lives: file, dtype name, shape and byte range in the file."""

    path: Path
    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    def load(self) -> np.ndarray:
        """Read the tensor and return it as float32 (bf16/f16 widened)."""
        with self.path.open("rb") as handle:
            handle.seek(self.begin)
            raw = handle.read(self.end - self.begin)
        if len(raw) != self.end - self.begin:
            raise InputError(f"{self.path}: tensor {self.name!r} is truncated")
        values = np.frombuffer(raw, dtype=_NUMPY[self.dtype]).reshape(self.shape)
        if self.dtype == "BF16":
            return (values.astype(np.uint32) << 16).view(np.float32)
        return values.astype(np.float32)


def read_header(path: Path) -> dict[str, TensorRecord]:
    """Return the tensors of one safetensors file; raise InputError naming the file if its
    header is malformed."""
    try:
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > _MAX_HEADER_BYTES:
                raise ValueError("header too large")
            header = json.loads(handle.read(length))
        size = path.stat().st_size
    except (OSError, struct.error, ValueError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: not a readable safetensors file ({err})") from None
    if not isinstance(header, dict):
        raise InputError(f"{path}: safetensors header is not a JSON object")
    start = 8 + length
    return {
        name: _record(path, name, entry, start, size)
        for name, entry in header.items()
        if name != "__metadata__"
    }


def _record(path: Path, name: str, entry: object, start: int, size: int) -> TensorRecord:
    try:
        dtype, shape = entry["dtype"], tuple(int(d) for d in entry["shape"])  # type: ignore[index]
        begin, end = (start + int(o) for o in entry["data_offsets"])  # type: ignore[index]
        width = np.dtype(_NUMPY[dtype]).itemsize
    except (KeyError, TypeError, ValueError):
        raise InputError(f"{path}: bad header entry for tensor {name!r}") from None
    if end - begin != math.prod(shape) * width or not start <= begin <= end <= size:
        raise InputError(f"{path}: tensor {name!r} has a byte range that does not fit")
    return TensorRecord(path, name, dtype, shape, begin, end)


def index_folder(folder: Path) -> dict[str, TensorRecord]:
    """Return every tensor of a checkpoint folder: the files listed by
    `model.safetensors.index.json` when present, else every `*.safetensors` file."""
    index_path = folder / "model.safetensors.index.json"
    if index_path.exists():
        files = _indexed_files(index_path)
    else:
        files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise InputError(f"{folder}: no *.safetensors weight files")
    records: dict[str, TensorRecord] = {}
    for file in files:
        records.update(read_header(file))
    return records


def _indexed_files(index_path: Path) -> list[Path]:
    try:
        weight_map = json.loads(index_path.read_text())["weight_map"]
        names = sorted(set(weight_map.values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise InputError(f"{index_path}: field 'weight_map' is missing or malformed") from None
    files = [index_path.parent / str(n) for n in names]
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise InputError(f"{index_path}: listed weight file {missing[0].name!r} does not exist")
    return files

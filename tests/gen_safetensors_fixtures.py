#!/usr/bin/python3
"""Writes the safetensors fixtures read by tests/test_safetensors.c, and the
seed corpora for tests/fuzz/fuzz_safetensors.c.

The `safetensors` package is not installed here (and torch 1.13 predates its
torch integration), so the writer below is an independent implementation of
the format as specified in the safetensors README, following the reference
library's choices where the spec leaves room:
  - 8-byte little-endian header length N, N bytes of UTF-8 JSON, then data;
  - "__metadata__" first, then tensors ordered by element size (largest
    first) and then by name, laid out contiguously from offset 0;
  - compact JSON, non-ASCII kept as UTF-8, header padded with spaces to a
    multiple of 8 bytes.
Tensor values come from simple formulas that the C test recomputes.

Run from the repository root: /usr/bin/python3 tests/gen_safetensors_fixtures.py
"""
import json
import os
import struct

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures", "safetensors")
SEEDS = os.path.join(ROOT, "tests", "fuzz", "corpus_safetensors")

DTYPES = {  # numpy dtype or torch dtype -> (safetensors name, element size)
    np.dtype("float32"): ("F32", 4),
    np.dtype("float64"): ("F64", 8),
    np.dtype("int64"): ("I64", 8),
    np.dtype("int32"): ("I32", 4),
    np.dtype("bool"): ("BOOL", 1),
    np.dtype("uint8"): ("U8", 1),
    torch.float16: ("F16", 2),
    torch.bfloat16: ("BF16", 2),
}


def raw(t):
    """(dtype name, element size, shape, little-endian bytes) of a numpy array or torch tensor."""
    if isinstance(t, torch.Tensor):
        name, size = DTYPES[t.dtype]
        shape = list(t.shape)
        # bf16/f16 bytes through an int16 view: numpy has no bfloat16.
        data = t.contiguous().view(torch.int16).numpy().astype("<i2").tobytes()
        return name, size, shape, data
    name, size = DTYPES[t.dtype]
    return name, size, list(t.shape), t.astype(t.dtype.newbyteorder("<")).tobytes()


def serialize(tensors, metadata=None, order="reference"):
    """tensors: list of (name, array). order "reference" sorts like the
    reference writer; "given" keeps the list order (like tfm's writer)."""
    items = [(name,) + raw(t) for name, t in tensors]
    if order == "reference":
        items.sort(key=lambda it: (-it[2], it[0]))
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    offset = 0
    for name, dtype, size, shape, data in items:
        assert len(data) == size * int(np.prod(shape, dtype=np.int64))
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(it[4] for it in items)


def write(path, blob):
    with open(path, "wb") as f:
        f.write(blob)
    print(f"wrote {os.path.relpath(path, ROOT)} ({len(blob)} bytes)")


def main():
    os.makedirs(FIX, exist_ok=True)
    os.makedirs(SEEDS, exist_ok=True)

    # Mixed dtypes; the C test recomputes every value from these formulas.
    weight = ((np.arange(12, dtype=np.float32) - 5) * np.float32(0.125)).reshape(3, 4)
    bias = np.arange(4, dtype=np.float32) * np.float32(1.5)
    specials = np.array([-0.0, np.inf, -np.inf, 1e-45, 3.4028235e38, np.nan], dtype=np.float32)
    reference = [
        ("encoder.weight", weight),
        ("encoder.bias", bias),
        ("specials", specials),
        ("scalar", np.array(3.25, dtype=np.float32)),
        ("empty", np.zeros((0, 3), dtype=np.float32)),
        ("ids", np.array([1, -2, 1 << 40], dtype=np.int64)),
        ("mask", np.array([[1, 0], [0, 7]], dtype=np.int32)),
        ("flags", np.array([True, False, True], dtype=np.bool_)),
        ("half", torch.tensor([1.0, -2.0, 0.5], dtype=torch.float16)),
        ("bf", torch.tensor([1.0, -3.0], dtype=torch.bfloat16)),
        ("d\u00e9codeur.poids", np.array([0.5, 0.25], dtype=np.float64)),
    ]
    meta = {"format": "pt", "source": "tests/gen_safetensors_fixtures.py"}
    write(os.path.join(FIX, "reference.safetensors"), serialize(reference, meta))

    # F32 only, in the given order, with tfm's default metadata: the C writer
    # must produce exactly these bytes for the same tensors.
    f32 = [
        ("enc.0.w", ((np.arange(6, dtype=np.float32) - 5) * np.float32(0.125)).reshape(2, 3)),
        ("enc.0.b", np.arange(3, dtype=np.float32) * np.float32(1.5)),
        ("scalar", np.array(3.25, dtype=np.float32)),
    ]
    write(os.path.join(FIX, "f32_given_order.safetensors"), serialize(f32, {"format": "pt"}, order="given"))

    # Small seeds for the fuzzer: valid files and a few near misses.
    write(os.path.join(SEEDS, "valid_mixed"), serialize(reference[:2] + reference[5:9], meta))
    write(os.path.join(SEEDS, "valid_f32"), serialize(f32, {"format": "pt"}, order="given"))
    write(os.path.join(SEEDS, "valid_empty_file"), serialize([], None))
    write(os.path.join(SEEDS, "valid_scalar_and_empty"), serialize(reference[3:5], {}))
    blob = bytearray(serialize(f32, {"format": "pt"}, order="given"))
    write(os.path.join(SEEDS, "truncated"), bytes(blob[:-3]))
    write(os.path.join(SEEDS, "trailing"), bytes(blob) + b"\0\0\0\0")


if __name__ == "__main__":
    main()

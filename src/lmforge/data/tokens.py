"""Token-id arrays on disk: a flat `.bin` of uint16/uint32 and a small `.json` header beside it.

Opened with numpy.memmap, so a corpus larger than memory is read page by page (nanoGPT's
train.bin/val.bin, plus a header so the dtype and length are not guessed):

    name.bin   raw little-endian token ids
    name.json  {"format": "lmforge-tokens", "version": 1, "dtype": "uint16", "length": N, "vocab_size": V}
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lmforge.io import atomic_write, atomic_write_json, read_json

FORMAT = "lmforge-tokens"


def write_tokens(path: str | Path, ids, vocab_size: int, meta: dict | None = None) -> Path:
    """Write `ids` to path.bin (+ path.json). uint16 when every id fits (vocab <= 65536), else uint32.

    `meta` (e.g. the corpus and split) is stored in the header under "meta" for the reader's benefit.
    """
    path = Path(path).with_suffix("")
    dtype = np.uint16 if vocab_size <= 2**16 else np.uint32
    arr = np.asarray(ids, dtype=np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= vocab_size):
        raise ValueError(f"token ids must be in [0, {vocab_size}), got range [{arr.min()}, {arr.max()}]")
    arr = arr.astype(dtype)
    atomic_write(path.with_suffix(".bin"), lambda tmp: arr.astype(np.dtype(dtype).newbyteorder("<")).tofile(tmp))
    atomic_write_json(path.with_suffix(".json"), {"format": FORMAT, "version": 1, "dtype": np.dtype(dtype).name,
                                                  "length": int(arr.size), "vocab_size": int(vocab_size), "meta": meta or {}})
    return path.with_suffix(".bin")


def read_header(path: str | Path) -> dict:
    header_path = Path(path).with_suffix(".json")
    if not header_path.exists():
        raise FileNotFoundError(f"token header {header_path} does not exist")
    header = read_json(header_path)
    if not isinstance(header, dict) or header.get("format") != FORMAT or header.get("dtype") not in ("uint16", "uint32") \
            or not isinstance(header.get("length"), int):
        raise ValueError(f"{header_path} is not an lmforge token header (expected format {FORMAT!r}, dtype uint16/uint32)")
    return header


def open_tokens(path: str | Path) -> np.memmap:
    """Memory-map path.bin read-only after checking it against path.json."""
    path = Path(path).with_suffix("")
    header, bin_path = read_header(path), path.with_suffix(".bin")
    if not bin_path.exists():
        raise FileNotFoundError(f"token file {bin_path} does not exist")
    dtype = np.dtype(header["dtype"]).newbyteorder("<")
    expected = header["length"] * dtype.itemsize
    if bin_path.stat().st_size != expected:
        raise ValueError(f"{bin_path} has {bin_path.stat().st_size} bytes but its header says "
                         f"{header['length']} tokens of {header['dtype']} ({expected} bytes): the file is truncated or stale")
    if header["length"] == 0:
        return np.zeros(0, dtype=dtype)  # numpy cannot memory-map an empty file
    return np.memmap(bin_path, dtype=dtype, mode="r", shape=(header["length"],))

#!/usr/bin/env python3
"""Writes the dequantization fixtures of crates/gpt/tests/fixtures/quant/: GGML blocks of every
block type gpt-rs reads, with the f32 values the `gguf` Python package (llama.cpp's reference
in numpy) dequantizes them to. Run in a virtual environment, never in CI:

    python3 -m venv VENV && VENV/bin/pip install gguf numpy
    VENV/bin/python scripts/make_quant_fixtures.py

One JSON file per type; each case holds `blocks` (hex of the raw block bytes) and `expected`
(base64 of the little-endian f32 values). The test reads every file in the folder.
"""

import base64
import json
import pathlib
import struct

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants

OUT = pathlib.Path(__file__).resolve().parent.parent / "crates/gpt/tests/fixtures/quant"

# Byte offsets of each type's f16 fields (ggml-common.h): the scales to set to extremes.
HALVES = {
    T.Q4_0: [0],
    T.Q4_1: [0, 2],
    T.Q5_0: [0],
    T.Q5_1: [0, 2],
    T.Q8_0: [0],
    T.Q2_K: [80, 82],
    T.Q3_K: [108],
    T.Q4_K: [0, 2],
    T.Q5_K: [0, 2],
    T.Q6_K: [208],
}

# Extreme f16 scales: +-max, +-0, the smallest subnormal, the largest subnormal, inf, NaN.
EXTREME_HALVES = {
    "max": 0x7BFF,
    "-max": 0xFBFF,
    "zero": 0x0000,
    "-zero": 0x8000,
    "min subnormal": 0x0001,
    "max subnormal": 0x03FF,
    "inf": 0x7C00,
    "nan": 0x7E00,
}

# The non-scale bytes: all quants and packed scales at their minimum and their maximum (a mixed
# pattern, 0xa5, runs with a few of the scales: the fixtures stay small).
FILLS = {"0x00": 0x00, "0xff": 0xFF}
MIXED_FILL = 0xA5


def block(qtype, fill, halves):
    _, type_size = quants.GGML_QUANT_SIZES[qtype]
    b = bytearray([fill]) * type_size
    for off, h in zip(HALVES[qtype], halves):
        b[off : off + 2] = struct.pack("<H", h)
    return bytes(b)


def case(qtype, name, blocks):
    data = np.frombuffer(b"".join(blocks), dtype=np.uint8)
    with np.errstate(all="ignore"):
        values = quants.dequantize(data, qtype).astype("<f4").reshape(-1)
    return {
        "name": name,
        "blocks": data.tobytes().hex(),
        "expected": base64.b64encode(values.tobytes()).decode(),
    }


def cases(qtype, rng):
    _, type_size = quants.GGML_QUANT_SIZES[qtype]
    n_halves = len(HALVES[qtype])
    out = []
    # Random quants and packed scales with finite, moderate f16 scales (dmin too).
    blocks = []
    for _ in range(3):
        b = bytearray(rng.integers(0, 256, type_size, dtype=np.uint8).tobytes())
        for off in HALVES[qtype]:
            h = np.float16(rng.uniform(-0.1, 0.1)).view(np.uint16)
            b[off : off + 2] = struct.pack("<H", int(h))
        blocks.append(bytes(b))
    out.append(case(qtype, "random quants, moderate scales", blocks))
    # Random bytes everywhere: scales may be subnormal, huge, inf or NaN.
    blocks = [rng.integers(0, 256, type_size, dtype=np.uint8).tobytes() for _ in range(2)]
    out.append(case(qtype, "random bytes", blocks))
    # Every extreme scale (all f16 fields alike) with every fill.
    for fname, fill in FILLS.items():
        blocks = [block(qtype, fill, [h] * n_halves) for h in EXTREME_HALVES.values()]
        out.append(case(qtype, f"extreme scales ({', '.join(EXTREME_HALVES)}), fill {fname}", blocks))
    mixed = [EXTREME_HALVES[k] for k in ("max", "-zero", "min subnormal")]
    blocks = [block(qtype, MIXED_FILL, [h] * n_halves) for h in mixed]
    out.append(case(qtype, "scales max, -zero, min subnormal, fill 0xa5", blocks))
    if n_halves == 2:
        # A tiny d with a huge min (dmin for the K-quants, m for Q4_1/Q5_1), and the reverse.
        blocks = [
            block(qtype, fill, halves)
            for fill in FILLS.values()
            for halves in ([0x0001, 0x7BFF], [0xFBFF, 0x7BFF])
        ]
        out.append(case(qtype, "d and min at opposite extremes", blocks))
    return out


def main():
    rng = np.random.default_rng(20261201)
    OUT.mkdir(parents=True, exist_ok=True)
    for qtype in HALVES:
        block_size, type_size = quants.GGML_QUANT_SIZES[qtype]
        doc = {
            "type": qtype.name,
            "ggml_id": int(qtype),
            "block_size": block_size,
            "type_size": type_size,
            "cases": cases(qtype, rng),
        }
        path = OUT / f"{qtype.name.lower()}.json"
        path.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"{path.name}: {len(doc['cases'])} cases, {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()

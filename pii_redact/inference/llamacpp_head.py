"""The output layer of a GGUF for the tokens faithful decoding allows, as llama.cpp computes it.

Gemma 3 270M's output layer (the tied embedding, 262,144 rows) is most of a decoding step's work,
and faithful decoding chooses among a few dozen tokens known before it runs. `llamacpp.Parallel`
stops llama.cpp's graph at the last hidden state (the node llama.cpp names `result_norm`; what
follows it is the output layer alone), and `OutputRows.logits` computes the allowed rows here, from
the GGUF's own weights (memory-mapped: the pages llama.cpp already maps) and the way llama.cpp's CPU
backend multiplies them: for q8_0 the hidden state is quantised to q8_0 blocks first and the dot
products are sums of int8 products times the two block scales; for f16 it is rounded to f16 first.
Only the order of the float additions differs, which a near-tie alone could notice.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

# ggml's type ids (ggml.h) of the output layers computed here; other types keep the full layer
F32, F16, Q8_0 = 0, 1, 8
QK8_0 = 32  # values per q8_0 block: an f16 scale, then 32 int8


class OutputRows:
    """A GGUF's output layer (`output.weight`, else the tied `token_embd.weight`), row by row."""

    def __init__(self, path: Path):
        from ..models.gguf import read_tensor

        try:
            kind, shape, offset, fields = read_tensor(path, "output.weight")
        except KeyError:
            kind, shape, offset, fields = read_tensor(path, "token_embd.weight")
        if kind not in (F32, F16, Q8_0) or len(shape) != 2 or (kind == Q8_0 and shape[0] % QK8_0):
            raise ValueError(f"an output layer of ggml type {kind}, shape {shape}")
        self.n_embd, self.n_vocab = shape
        self.kind = kind
        if kind == Q8_0:
            block = np.dtype([("d", "<f2"), ("qs", "i1", QK8_0)])
            self.weight = np.memmap(path, block, "r", offset, (self.n_vocab, self.n_embd // QK8_0))
        else:
            self.weight = np.memmap(path, "<f4" if kind == F32 else "<f2", "r", offset, (self.n_vocab, self.n_embd))
        # llama.cpp's Gemma 2 graph caps the logits after the layer; Gemma 3's GGUFs carry no cap
        self.softcap = next((float(v) for k, v in fields.items() if k.endswith(".final_logit_softcapping") and v), None)

    @classmethod
    def of(cls, path: Path) -> OutputRows | None:
        """The GGUF's output layer where it is of a type computed here (f32, f16, q8_0), else None."""
        import struct

        try:
            return cls(path)
        except (KeyError, ValueError, struct.error, OSError):  # llama.cpp loaded it: then its whole layer
            return None

    def logits(self, hidden, ids: list[int]):
        """A full-width row of logits (torch, float32), right at `ids` and -inf elsewhere (never
        read: the constraint forbids those tokens), from `hidden`, the position's last hidden state."""
        import torch

        x = np.asarray(hidden, dtype=np.float32).reshape(self.n_embd)
        rows = np.fromiter(ids, dtype=np.int64, count=len(ids))
        if self.kind == Q8_0:
            qs, scale = quantize_q8_0(x)
            w = self.weight[rows]
            sums = np.einsum("kbj,bj->kb", w["qs"].astype(np.int32), qs.astype(np.int32))
            picked = (sums.astype(np.float32) * (w["d"].astype(np.float32) * scale)).sum(axis=1)
        elif self.kind == F16:
            picked = self.weight[rows].astype(np.float32) @ x.astype(np.float16).astype(np.float32)
        else:
            picked = self.weight[rows] @ x
        if self.softcap is not None:
            picked = np.tanh(picked / self.softcap) * self.softcap
        out = torch.full((self.n_vocab,), float("-inf"), dtype=torch.float32)
        out[torch.from_numpy(rows)] = torch.from_numpy(np.asarray(picked, dtype=np.float32))
        return out


def quantize_q8_0(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int8 values, float32 scales) of `x` in q8_0 blocks, as ggml's x86 CPU code quantises a
    matrix product's activations: scale = max|x| / 127 stored as f16, values x * (127 / max|x|)
    rounded to the nearest integer, ties to even."""
    blocks = x.reshape(-1, QK8_0)
    amax = np.abs(blocks).max(axis=1)
    scale = (amax / np.float32(127)).astype(np.float16).astype(np.float32)
    with np.errstate(divide="ignore"):
        inverse = np.where(amax > 0, np.float32(127) / amax, np.float32(0)).astype(np.float32)
    return np.rint(blocks * inverse[:, None]).astype(np.int8), scale

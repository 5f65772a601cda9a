"""Token statistics of a tokenized dataset: codebook usage, perplexity, per-position entropy, Zipf fit."""
from __future__ import annotations

import math

import torch
from torch import Tensor


def _entropy_bits(counts: Tensor) -> Tensor:
    """Entropy in bits of histograms along the last dim."""
    p = counts / counts.sum(-1, keepdim=True).clamp_min(1)
    return -(p * p.clamp_min(1e-12).log2()).sum(-1)


def zipf_fit(counts: Tensor) -> dict[str, float]:
    """Least-squares line through log(frequency) vs log(rank) of the used codes: slope (-s) and R^2."""
    freq = counts[counts > 0].double().sort(descending=True).values
    if freq.numel() < 2:
        return {"zipf_exponent": float("nan"), "zipf_r2": float("nan")}
    x = torch.arange(1, freq.numel() + 1, dtype=torch.float64).log()
    y = freq.log()
    slope = ((x - x.mean()) * (y - y.mean())).sum() / (x - x.mean()).square().sum()
    residual = y - (y.mean() + slope * (x - x.mean()))
    r2 = 1 - residual.square().sum() / (y - y.mean()).square().sum().clamp_min(1e-12)
    return {"zipf_exponent": -slope.item(), "zipf_r2": r2.item()}


def token_statistics(ids: Tensor, vocab_size: int) -> dict[str, object]:
    """Statistics of ids (N, L) [one codebook] or (N, Q, T) [Q codebooks], long in [0, vocab_size).

    Returns usage (fraction of codes seen), perplexity (2**entropy), entropy_bits (of the code
    distribution, max log2 vocab), per_position_entropy_bits (over items, for each of L
    positions; codebook 0 for (N, Q, T)), and a Zipf fit of the code frequencies; per codebook
    lists for Q > 1.
    """
    if ids.dtype.is_floating_point or ids.ndim not in (2, 3) or ids.numel() == 0:
        raise ValueError(f"ids: expected a non-empty integer tensor (N, L) or (N, Q, T), got {ids.dtype} {tuple(ids.shape)}")
    if int(ids.min()) < 0 or int(ids.max()) >= vocab_size:
        raise ValueError(f"ids: expected values in [0, {vocab_size}), got [{int(ids.min())}, {int(ids.max())}]")
    per_codebook = ids.unsqueeze(1) if ids.ndim == 2 else ids  # (N, Q, T)
    q = per_codebook.shape[1]
    flat = per_codebook.transpose(0, 1).reshape(q, -1)
    counts = torch.stack([torch.bincount(row, minlength=vocab_size) for row in flat]).double()
    entropy = _entropy_bits(counts)
    first = per_codebook[:, 0]  # (N, T): entropy over items at each position
    position_counts = torch.stack([torch.bincount(col, minlength=vocab_size) for col in first.T]).double()
    fits = [zipf_fit(c) for c in counts]

    def one_or_list(values: list) -> object:
        return values[0] if q == 1 else values

    return {
        "items": ids.shape[0],
        "tokens": int(ids.numel()),
        "vocab_size": vocab_size,
        "max_entropy_bits": math.log2(vocab_size),
        "usage": one_or_list([(c > 0).double().mean().item() for c in counts]),
        "entropy_bits": one_or_list(entropy.tolist()),
        "perplexity": one_or_list((2**entropy).tolist()),
        "per_position_entropy_bits": _entropy_bits(position_counts).tolist(),
        "zipf_exponent": one_or_list([f["zipf_exponent"] for f in fits]),
        "zipf_r2": one_or_list([f["zipf_r2"] for f in fits]),
    }

"""Lay out multi-codebook tokens (B,Q,T) for an AR model: the delay pattern or frame-major flattening.

Delay pattern (MusicGen): stream q is shifted right by q steps, so at step t the model predicts
codebook 0 of frame t, codebook 1 of frame t-1, ...; Q streams are predicted in parallel and a
frame's codebook q is conditioned on its codebooks < q. Flattening predicts one id at a time.
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["delay_interleave", "delay_deinterleave", "flatten_codebooks", "unflatten_codebooks"]


def _check_ids(x: Tensor, name: str, shape: str, ndim: int) -> None:
    """Raise ValueError unless x is a non-empty integer tensor of rank ndim."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name}: expected an integer tensor {shape}, got {type(x).__name__}")
    if x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool:
        raise ValueError(f"{name}: expected an integer tensor {shape}, got dtype {x.dtype}")
    if x.ndim != ndim or x.numel() == 0:
        raise ValueError(f"{name}: expected a non-empty integer tensor {shape}, got shape {tuple(x.shape)}")


def _delay_index(q: int, t: int, device: torch.device) -> Tensor:
    """(Q, T) positions in the delayed layout: frame t of stream q sits at t + q."""
    return torch.arange(t, device=device)[None, :] + torch.arange(q, device=device)[:, None]


def delay_interleave(codes: Tensor, pad_id: int) -> Tensor:
    """(B,Q,T) -> (B,Q,T+Q-1): stream q shifted right by q steps, empty positions = pad_id."""
    _check_ids(codes, "codes", "(B, Q, T)", 3)
    b, q, t = codes.shape
    out = torch.full((b, q, t + q - 1), int(pad_id), dtype=codes.dtype, device=codes.device)
    return out.scatter_(2, _delay_index(q, t, codes.device).expand(b, q, t), codes)


def delay_deinterleave(x: Tensor) -> Tensor:
    """(B,Q,T+Q-1) -> (B,Q,T): the exact inverse of `delay_interleave` (pads dropped)."""
    _check_ids(x, "x", "(B, Q, T+Q-1)", 3)
    b, q, length = x.shape
    t = length - q + 1
    if t < 1:
        raise ValueError(f"x: expected (B, Q, T+Q-1) with T >= 1, i.e. length >= Q = {q}, got shape {tuple(x.shape)}")
    return x.gather(2, _delay_index(q, t, x.device).expand(b, q, t))


def flatten_codebooks(codes: Tensor, vocab_size: int) -> Tensor:
    """(B,Q,T) -> (B,T*Q) frame-major (t0q0, t0q1, ..., t1q0, ...), codebook q's ids offset by q*vocab_size."""
    _check_ids(codes, "codes", "(B, Q, T)", 3)
    lo, hi = int(codes.min()), int(codes.max())
    if lo < 0 or hi >= vocab_size:
        raise ValueError(f"codes: expected ids in [0, {vocab_size}), got range [{lo}, {hi}]")
    b, q, t = codes.shape
    offsets = torch.arange(q, device=codes.device, dtype=codes.dtype)[None, :, None] * vocab_size
    return (codes + offsets).transpose(1, 2).reshape(b, t * q)


def unflatten_codebooks(x: Tensor, num_codebooks: int, vocab_size: int) -> Tensor:
    """(B,T*Q) -> (B,Q,T): the exact inverse of `flatten_codebooks`."""
    _check_ids(x, "x", "(B, T*Q)", 2)
    b, length = x.shape
    q = num_codebooks
    if q < 1 or length % q:
        raise ValueError(f"x: expected a length divisible by num_codebooks = {q}, got shape {tuple(x.shape)}")
    frames = x.reshape(b, length // q, q).transpose(1, 2)
    offsets = torch.arange(q, device=x.device, dtype=x.dtype)[None, :, None] * vocab_size
    codes = frames - offsets
    if int(codes.min()) < 0 or int(codes.max()) >= vocab_size:
        bad = ((codes < 0) | (codes >= vocab_size)).nonzero()[0].tolist()
        raise ValueError(
            f"x: expected the ids of codebook q in [q*{vocab_size}, (q+1)*{vocab_size}), got {int(frames[tuple(bad)])} "
            f"for codebook {bad[1]} at frame {bad[2]} of batch item {bad[0]}"
        )
    return codes.contiguous()

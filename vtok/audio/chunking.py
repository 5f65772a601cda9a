"""Chunked encode/decode of long audio: overlapping windows aligned to hop_length, each keeping its core.

A signal of T' token frames is cut into cores of `chunk` frames; each core is processed inside a
window that adds `left` and `right` frames of context (clipped at the signal's ends), and only the
core's frames (or samples) are kept, so memory follows the window, not the signal. Windows start on
multiples of hop_length, so their frames are the whole signal's frames. Encoding stitches the cores'
ids; decoding stitches the cores' samples with a linear crossfade of `fade` frames centred on each
seam (0 = a hard cut, exact for causal models).

Measured on the shipped speech (13.4 s; seeded weights, k-means codebooks; 2 s chunks), ids against
whole-signal encoding: without context, rvq-codec-tiny differs 4 frames before to 3 after a seam
(identical from 4 frames of context), wavtokenizer-tiny 4 before to 33 after (its LSTM; identical
from 48); rvq-codec-24k (causal, 2-layer LSTM) up to ~20 frames after a seam, its latents agreeing
to 3e-8 after 40 frames; beyond that a few frames (3 of 1005 with 1 s of context) flip on float
rounding, as many as encoding the same signal in a batch of two flips (10). The default context,
`AudioTokenizer.chunk_overlap_seconds`, is 1 s. WavTokenizer's decoder (GroupNorm and attention
over the window) is not local: chunked decoding is smooth across seams but not the whole decode.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from numbers import Real

import torch
from torch import Tensor

from ..tokenizer import AudioTokenizer

Span = tuple[int, int, int, int]  # window start, window end, core start, core end (frames)


def chunk_frames(chunk_seconds: float, overlap_seconds: float, tokens_per_second: float) -> tuple[int, int]:
    """Seconds -> (core frames >= 1, context frames >= 0); ValueError on a bad chunk or overlap."""
    for name, value in (("chunk_seconds", chunk_seconds), ("overlap_seconds", overlap_seconds)):
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
            raise ValueError(f"{name}: expected a finite number of seconds, got {value!r}")
    frame = 1.0 / tokens_per_second
    if chunk_seconds < frame:
        raise ValueError(f"chunk_seconds: expected at least one token frame ({frame:.4g} s), got {chunk_seconds!r}")
    if overlap_seconds < 0:
        raise ValueError(f"overlap_seconds: expected a number of seconds >= 0, got {overlap_seconds!r}")
    return int(chunk_seconds * tokens_per_second), math.ceil(overlap_seconds * tokens_per_second - 1e-9)


def spans(total: int, chunk: int, left: int, right: int) -> list[Span]:
    """Frames [0, total) as cores of `chunk` frames, each in a window with `left`/`right` context, clipped."""
    return [(max(0, s - left), min(total, s + chunk + right), s, min(total, s + chunk)) for s in range(0, total, chunk)]


def encode_chunked(encode: Callable[[Tensor], Tensor], wav: Tensor, hop: int, chunk: int, left: int, right: int) -> Tensor:
    """Audio (B,1,T) -> ids (B,Q,ceil(T / hop)) by `encode` ((B,1,t) -> (B,Q,ceil(t / hop))) on windows."""
    length = wav.shape[-1]
    pieces = []
    for w0, w1, c0, c1 in spans(math.ceil(length / hop), chunk, left, right):
        ids = encode(wav[..., w0 * hop : min(w1 * hop, length)])
        pieces.append(ids[..., c0 - w0 : c1 - w0])
    return torch.cat(pieces, dim=-1)


def decode_chunked(decode: Callable[[Tensor], Tensor], ids: Tensor, hop: int, chunk: int, left: int, right: int,
                   fade: int) -> Tensor:
    """Ids (B,Q,T') -> audio (B,1,T' * hop) by `decode` ((B,Q,n) -> (B,1,n * hop)) on windows, crossfaded.

    The fade spans `fade` frames (at most `chunk`) centred on each seam; it needs fade / 2 <= min(left, right).
    """
    half = min(fade, chunk) * hop // 2
    if half and half > min(left, right) * hop:
        raise ValueError(f"fade: {fade} frames need at least {math.ceil(fade / 2)} frames of context on each side")
    total = ids.shape[-1]
    out: Tensor | None = None
    for w0, w1, c0, c1 in spans(total, chunk, left, right):
        y = decode(ids[..., w0:w1])
        if out is None:
            out = y.new_zeros(*y.shape[:-1], total * hop)
        a, b = max(0, c0 * hop - half), min(total * hop, c1 * hop + half)
        piece = y[..., a - w0 * hop : b - w0 * hop]
        if half:
            t = torch.arange(a, b, device=y.device, dtype=torch.float32) + 0.5
            rise = ((t - c0 * hop + half) / (2 * half)).clamp(0, 1) if c0 > 0 else torch.ones_like(t)
            fall = ((c1 * hop + half - t) / (2 * half)).clamp(0, 1) if c1 < total else torch.ones_like(t)
            piece = piece * (rise * fall).to(piece.dtype)
        out[..., a:b] += piece
    assert out is not None
    return out


def encode_in_chunks(tok: AudioTokenizer, encode: Callable[[Tensor], Tensor], wav: Tensor, chunk_seconds: float | None,
                     overlap_seconds: float | None) -> Tensor:
    """`tok`'s unchecked `encode` on windows of chunk_seconds + overlap_seconds context: (B,1,T) -> (B,Q,T');
    on the whole signal when neither is given."""
    if chunk_seconds is None and overlap_seconds is None:
        return encode(wav)
    overlap = tok.chunk_overlap_seconds if overlap_seconds is None else overlap_seconds
    chunk, context = chunk_frames(chunk_seconds, overlap, tok.tokens_per_second)
    return encode_chunked(encode, wav, tok.hop_length, chunk, context, 0 if tok.causal else context)


def decode_in_chunks(tok: AudioTokenizer, decode: Callable[[Tensor], Tensor], ids: Tensor, chunk_seconds: float | None,
                     overlap_seconds: float | None) -> Tensor:
    """`tok`'s unchecked `decode` on windows, crossfaded over the context (hard cuts if causal): (B,Q,T') -> (B,1,T'*hop);
    on all frames at once when neither chunk_seconds nor overlap_seconds is given."""
    if chunk_seconds is None and overlap_seconds is None:
        return decode(ids)
    overlap = tok.chunk_overlap_seconds if overlap_seconds is None else overlap_seconds
    chunk, context = chunk_frames(chunk_seconds, overlap, tok.tokens_per_second)
    if tok.causal:
        return decode_chunked(decode, ids, tok.hop_length, chunk, context, 0, 0)
    return decode_chunked(decode, ids, tok.hop_length, chunk, context, context, context)

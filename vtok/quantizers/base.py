"""The one answer every quantizer gives, and the checks every quantizer makes."""
from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .stats import CodeUsage

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


@dataclass(frozen=True)
class QuantizerOutput:
    """What a quantizer returns: z_q (B,N,D), ids (B,N) or (B,N,Q) long, loss scalar, stats."""

    z_q: Tensor
    ids: Tensor
    loss: Tensor
    stats: Mapping[str, Tensor]  # usage, perplexity, dead_codes (computed on access)


def check_latents(z: Tensor, dim: int) -> None:
    """Raise ValueError unless z is a non-empty float tensor of shape (B, N, dim)."""
    if not isinstance(z, Tensor):
        raise ValueError(f"quantizer input: expected a torch.Tensor (B, N, {dim}), got {type(z).__name__}")
    if z.ndim != 3:
        raise ValueError(f"quantizer input: expected shape (B, N, {dim}), got {tuple(z.shape)} (rank {z.ndim})")
    if z.dtype not in FLOAT_DTYPES:
        raise ValueError(f"quantizer input: expected a float dtype, got {z.dtype}")
    if z.shape[-1] != dim:
        raise ValueError(f"quantizer input: expected last dim {dim}, got {z.shape[-1]} (shape {tuple(z.shape)})")
    if z.numel() == 0:
        raise ValueError(f"quantizer input: expected a non-empty (B, N, {dim}) tensor, got shape {tuple(z.shape)}")


def check_ids(ids: Tensor, codebook_size: int, num_codebooks: int, multi: bool) -> None:
    """Raise ValueError unless ids is a non-empty integer tensor (B,N) [or (B,N,q<=Q)] in [0, K)."""
    want = f"(B, N, q<= {num_codebooks})" if multi else "(B, N)"
    if not isinstance(ids, Tensor):
        raise ValueError(f"ids: expected a torch.Tensor {want}, got {type(ids).__name__}")
    if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
        raise ValueError(f"ids: expected an integer dtype (torch.long), got {ids.dtype}")
    if ids.ndim != (3 if multi else 2) or (multi and not 1 <= ids.shape[-1] <= num_codebooks):
        raise ValueError(f"ids: expected shape {want}, got {tuple(ids.shape)}")
    if ids.numel() == 0:
        raise ValueError(f"ids: expected a non-empty tensor {want}, got shape {tuple(ids.shape)}")
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0 or hi >= codebook_size:
        raise ValueError(f"ids: expected values in [0, {codebook_size}), got range [{lo}, {hi}]")


class Quantizer(nn.Module):
    """Base of every vtok quantizer: validates, calls the library quantizer, tracks code usage.

    Subclasses set `kind` and implement `quantize(z) -> (z_q, ids, loss)` and `lookup(ids) -> z_q`.
    """

    kind: str = ""

    def __init__(self, dim: int, codebook_size: int, num_codebooks: int = 1, stats_window: int | None = None):
        super().__init__()
        if dim < 1 or codebook_size < 2 or num_codebooks < 1:
            raise ValueError(
                f"{self.kind}: expected dim >= 1, codebook_size >= 2, num_codebooks >= 1, "
                f"got dim={dim}, codebook_size={codebook_size}, num_codebooks={num_codebooks}"
            )
        self.dim = dim
        self.codebook_size = codebook_size
        self.num_codebooks = num_codebooks
        self.usage = CodeUsage(num_codebooks, codebook_size, stats_window)

    @property
    def multi_codebook(self) -> bool:
        """True when ids carry a trailing codebook axis (B, N, Q)."""
        return False

    @property
    def bits_per_token(self) -> float:
        """log2 of the codebook size, times the number of codebooks."""
        return self.num_codebooks * math.log2(self.codebook_size)

    def quantize(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        raise NotImplementedError

    def lookup(self, ids: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, z: Tensor) -> QuantizerOutput:
        """Quantize z (B, N, dim) float -> QuantizerOutput."""
        check_latents(z, self.dim)
        z_q, ids, loss = self.quantize(z)
        ids = ids.long()
        self.usage.update(ids if self.multi_codebook else ids.unsqueeze(-1), sync=self.training)
        return QuantizerOutput(z_q.to(z.dtype), ids, loss, self.usage.stats())

    def decode_ids(self, ids: Tensor) -> Tensor:
        """Code vectors (B, N, dim) for ids (B, N) or (B, N, q); equals z_q of forward in eval mode."""
        check_ids(ids, self.codebook_size, self.num_codebooks, self.multi_codebook)
        return self.lookup(ids.long())

    @contextmanager
    def inference(self) -> Iterator["Quantizer"]:
        """Quantize as in eval mode inside the block (no EMA updates, no dropout), then restore the mode."""
        training = self.training
        self.eval()
        try:
            yield self
        finally:
            self.train(training)

    def extra_repr(self) -> str:
        return f"kind={self.kind}, dim={self.dim}, codebook_size={self.codebook_size}, num_codebooks={self.num_codebooks}"

"""LFQ: lookup-free quantization (MAGVIT-v2): the sign of each of log2(K) dims is a bit."""
from __future__ import annotations

import math

from torch import Tensor
from vector_quantize_pytorch import LFQ as LibLFQ

from .base import Quantizer


class LFQ(Quantizer):
    """Binary codes in {-1, 1}^log2(K), with MAGVIT-v2's entropy loss and a commitment loss.

    codebook_size must be a power of two; a projection maps dim <-> log2(K) when they differ.
    """

    kind = "lfq"
    spherical = False

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        *,
        entropy_loss_weight: float = 0.1,
        commitment_weight: float = 0.25,
        diversity_gamma: float = 1.0,
        stats_window: int | None = None,
    ):
        if codebook_size < 2 or codebook_size & (codebook_size - 1):
            raise ValueError(f"{self.kind}: codebook_size must be a power of two, got {codebook_size}")
        super().__init__(dim, codebook_size, 1, stats_window)
        self.lfq = LibLFQ(
            dim=dim, codebook_size=codebook_size, entropy_loss_weight=entropy_loss_weight,
            commitment_loss_weight=commitment_weight, diversity_gamma=diversity_gamma, spherical=self.spherical,
        )

    @property
    def bits_per_token(self) -> float:
        return float(int(math.log2(self.codebook_size)))

    def quantize(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        z_q, ids, loss = self.lfq(z)
        return z_q, ids, loss

    def lookup(self, ids: Tensor) -> Tensor:
        return self.lfq.indices_to_codes(ids)

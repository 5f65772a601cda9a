"""GRVQ: grouped residual VQ (HiFi-Codec): the channels split into G groups, an RVQ for each."""
from __future__ import annotations

from typing import Literal

import torch
from einops import rearrange
from torch import Tensor
from vector_quantize_pytorch import GroupedResidualVQ

from .base import Quantizer
from .rvq import residual_lookup
from .sync import sync_codebooks_at_runtime
from .vq import vq_options


class GRVQ(Quantizer):
    """G groups of dim/G channels, each with its own Q-level RVQ; ids (B, N, G*Q), group-major.

    `decode_ids` accepts (B, N, G*q) for q <= Q: the first q levels of every group.
    """

    kind = "grvq"

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        num_codebooks: int,
        groups: int,
        *,
        quantizer_dropout: bool = False,
        min_codebooks: int = 1,
        codebook_dim: int | None = None,
        distance: Literal["l2", "cosine"] = "l2",
        ema: bool = True,
        decay: float = 0.99,
        kmeans_init: bool = False,
        kmeans_iters: int = 10,
        dead_code_threshold: float = 0.0,
        commitment_weight: float = 0.25,
        gradient: Literal["ste", "rotation"] = "ste",
        stats_window: int | None = None,
    ):
        if groups < 1 or dim % groups:
            raise ValueError(f"grvq: dim ({dim}) must be divisible by groups ({groups})")
        if not 1 <= min_codebooks <= num_codebooks:
            raise ValueError(f"grvq: min_codebooks must be in [1, {num_codebooks}], got {min_codebooks}")
        super().__init__(dim, codebook_size, groups * num_codebooks, stats_window)
        self.groups, self.levels = groups, num_codebooks
        opts = vq_options(
            self.kind, codebook_dim=codebook_dim, distance=distance, ema=ema, decay=decay,
            kmeans_init=kmeans_init, kmeans_iters=kmeans_iters, dead_code_threshold=dead_code_threshold,
            commitment_weight=commitment_weight, gradient=gradient,
        )
        self.grvq = GroupedResidualVQ(
            dim=dim, groups=groups, codebook_size=codebook_size, num_quantizers=num_codebooks,
            quantize_dropout=quantizer_dropout, quantize_dropout_cutoff_index=min_codebooks - 1, **opts,
        )
        sync_codebooks_at_runtime(self)

    @property
    def multi_codebook(self) -> bool:
        return True

    def quantize(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        z_q, ids, losses = self.grvq(z)  # ids (G, B, N, Q)
        return z_q, rearrange(ids, "g b n q -> b n (g q)"), losses.sum()

    def lookup(self, ids: Tensor) -> Tensor:
        if ids.shape[-1] % self.groups:
            raise ValueError(f"grvq ids: expected a last dim that is a multiple of groups={self.groups}, got {ids.shape[-1]}")
        per_group = rearrange(ids, "b n (g q) -> g b n q", g=self.groups)
        return torch.cat([residual_lookup(rvq, g_ids) for rvq, g_ids in zip(self.grvq.rvqs, per_group)], dim=-1)


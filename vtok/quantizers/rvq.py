"""RVQ: residual vector quantization (SoundStream/EnCodec/DAC) with quantizer dropout."""
from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor
from vector_quantize_pytorch import ResidualVQ

from .base import Quantizer
from .sync import sync_codebooks_at_runtime
from .vq import vq_options


def residual_lookup(rvq: ResidualVQ, ids: Tensor) -> Tensor:
    """Sum of the first q levels' codes of a ResidualVQ, projected out: ids (B, N, q) -> (B, N, D)."""
    codebooks = rvq.codebooks
    z = torch.zeros(*ids.shape[:-1], codebooks.shape[-1], device=ids.device, dtype=codebooks.dtype)
    for level in range(ids.shape[-1]):
        z = z + codebooks[level][ids[..., level]]
    return rvq.project_out(z)


class RVQ(Quantizer):
    """Q codebooks, each quantizing the residual the previous ones left; ids (B, N, Q).

    quantizer_dropout: in training, keep only the first q in [min_codebooks, Q] codebooks
    (one draw per step, the same on every rank; dropped levels get id -1 in that step's
    output) so one model serves several bitrates;
    `decode_ids` accepts ids (B, N, q) for any q <= Q. VQ keywords as for `vq`.
    """

    kind = "rvq"

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        num_codebooks: int,
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
        super().__init__(dim, codebook_size, num_codebooks, stats_window)
        if not 1 <= min_codebooks <= num_codebooks:
            raise ValueError(f"rvq: min_codebooks must be in [1, {num_codebooks}], got {min_codebooks}")
        opts = vq_options(
            self.kind, codebook_dim=codebook_dim, distance=distance, ema=ema, decay=decay,
            kmeans_init=kmeans_init, kmeans_iters=kmeans_iters, dead_code_threshold=dead_code_threshold,
            commitment_weight=commitment_weight, gradient=gradient,
        )
        self.rvq = ResidualVQ(
            dim=dim, codebook_size=codebook_size, num_quantizers=num_codebooks,
            quantize_dropout=quantizer_dropout, quantize_dropout_cutoff_index=min_codebooks - 1, **opts,
        )
        sync_codebooks_at_runtime(self)

    @property
    def multi_codebook(self) -> bool:
        return True

    @property
    def codebooks(self) -> Tensor:
        """The codebooks (Q, K, codebook_dim)."""
        return self.rvq.codebooks

    def quantize(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        z_q, ids, losses = self.rvq(z)  # levels dropped by quantizer dropout have id -1
        return z_q, ids, losses.sum()

    def lookup(self, ids: Tensor) -> Tensor:
        return residual_lookup(self.rvq, ids)

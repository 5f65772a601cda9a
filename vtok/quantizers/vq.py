"""VQ: one codebook, nearest-neighbour lookup (van den Oord et al. 2017), EMA or learned."""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from vector_quantize_pytorch import VectorQuantize

from .base import Quantizer
from .sync import sync_codebooks_at_runtime


def vq_options(
    kind: str,
    *,
    codebook_dim: int | None,
    distance: str,
    ema: bool,
    decay: float,
    kmeans_init: bool,
    kmeans_iters: int,
    dead_code_threshold: float,
    commitment_weight: float,
    gradient: str,
) -> dict:
    """Translate vtok's VQ keywords into vector-quantize-pytorch's, checking them on the way."""
    if distance not in ("l2", "cosine"):
        raise ValueError(f"{kind}: distance must be 'l2' or 'cosine', got {distance!r}")
    if gradient not in ("ste", "rotation"):
        raise ValueError(f"{kind}: gradient must be 'ste' or 'rotation', got {gradient!r}")
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"{kind}: decay must be in [0, 1), got {decay}")
    return dict(
        codebook_dim=codebook_dim,
        use_cosine_sim=distance == "cosine",
        ema_update=ema,
        learnable_codebook=not ema,
        decay=decay,
        kmeans_init=kmeans_init,
        kmeans_iters=kmeans_iters,
        threshold_ema_dead_code=dead_code_threshold,
        commitment_weight=commitment_weight,
        rotation_trick=gradient == "rotation",
        straight_through=False,
        sync_codebook=False,  # synced at run time instead, see sync.py
    )


def library_codebook_state(codebook: Tensor) -> dict[str, Tensor]:
    """State of a VQ over vector-quantize-pytorch holding `codebook` (K, D), keys relative to the VQ.

    For converters of official weights: the library keeps the codebook as (1, K, D) plus EMA
    bookkeeping, which is set as if every code had been used once.
    """
    return {
        "vq._codebook.embed": codebook[None].clone(),
        "vq._codebook.embed_avg": codebook[None].clone(),
        "vq._codebook.cluster_size": torch.ones(1, codebook.shape[0]),
        "vq._codebook.initted": torch.tensor([True]),
    }


class LearnedCosineCodebook(nn.Module):
    """A codebook learned by gradient with l2-normalised codes and inputs (TiTok, ViT-VQGAN).

    vector-quantize-pytorch has no learned cosine codebook, so this is the one VQ written here:
    nearest code by squared distance of unit vectors, codebook loss + commitment * commitment
    loss (van den Oord et al.), straight-through gradient to the normalised input.
    """

    def __init__(self, dim: int, codebook_size: int, commitment_weight: float):
        super().__init__()
        self.commitment_weight = commitment_weight
        self.embedding = nn.Embedding(codebook_size, dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / codebook_size, 1.0 / codebook_size)

    @property
    def codebook(self) -> Tensor:
        """Unit-norm codes (K, D)."""
        return F.normalize(self.embedding.weight, dim=-1)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """z (B, N, D) -> (z_q unit vectors with straight-through gradient, ids (B, N), loss)."""
        with torch.autocast(z.device.type, enabled=False):  # distances in float32 even under bf16 autocast
            return self._quantize(F.normalize(z.to(torch.promote_types(z.dtype, torch.float32)), dim=-1))

    def _quantize(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        codes = self.codebook
        flat = z.reshape(-1, z.shape[-1])
        # |z|^2 + |e|^2 - 2 z.e, not just -z.e: near-ties resolve as in the official TiTok code
        dist = flat.pow(2).sum(1, keepdim=True) + codes.pow(2).sum(1) - 2 * flat @ codes.t()
        ids = dist.argmin(dim=1).view(z.shape[:-1])
        z_q = F.embedding(ids, codes)
        loss = F.mse_loss(z_q, z.detach()) + self.commitment_weight * F.mse_loss(z, z_q.detach())
        return z + (z_q - z).detach(), ids, loss

    def lookup(self, ids: Tensor) -> Tensor:
        return F.embedding(ids, self.codebook)


class VQ(Quantizer):
    """Vector quantizer over vector_quantize_pytorch.VectorQuantize.

    ema: EMA codebook updates (decay) or a codebook learned by gradient; distance: l2 | cosine
    (l2-normalised codes; learned + cosine is `LearnedCosineCodebook`, TiTok's quantizer); codebook_dim: low-dim factorised codes with in/out projections;
    dead_code_threshold: restart codes whose EMA cluster size falls below it from batch vectors;
    gradient: straight-through ('ste') or the rotation trick.
    """

    kind = "vq"

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        *,
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
        super().__init__(dim, codebook_size, 1, stats_window)
        opts = vq_options(
            self.kind, codebook_dim=codebook_dim, distance=distance, ema=ema, decay=decay,
            kmeans_init=kmeans_init, kmeans_iters=kmeans_iters, dead_code_threshold=dead_code_threshold,
            commitment_weight=commitment_weight, gradient=gradient,
        )
        if not ema and distance == "cosine":
            extras = {"codebook_dim": codebook_dim, "kmeans_init": kmeans_init, "gradient": gradient != "ste",
                      "dead_code_threshold": dead_code_threshold}
            if any(extras.values()):
                raise ValueError(
                    f"{self.kind}: a learned cosine codebook supports none of {sorted(k for k, v in extras.items() if v)}; "
                    "use ema=True for k-means init, dead-code restarts, projections or the rotation trick"
                )
            self.vq = LearnedCosineCodebook(dim, codebook_size, commitment_weight)
        else:
            self.vq = VectorQuantize(dim=dim, codebook_size=codebook_size, **opts)
            sync_codebooks_at_runtime(self)

    @property
    def codebook(self) -> Tensor:
        """The codebook (K, codebook_dim)."""
        return self.vq.codebook

    def quantize(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.vq(z)

    def lookup(self, ids: Tensor) -> Tensor:
        if isinstance(self.vq, LearnedCosineCodebook):
            return self.vq.lookup(ids)
        return self.vq.get_output_from_indices(ids)

"""VQ: one codebook, nearest-neighbour lookup (van den Oord et al. 2017), EMA or learned."""
from __future__ import annotations

from typing import Literal

from torch import Tensor
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
    if not ema and distance == "cosine":
        raise ValueError(f"{kind}: a learned (ema=False) codebook needs distance='l2'; cosine works with ema=True")
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


class VQ(Quantizer):
    """Vector quantizer over vector_quantize_pytorch.VectorQuantize.

    ema: EMA codebook updates (decay) or a codebook learned by gradient; distance: l2 | cosine
    (l2-normalised codes); codebook_dim: low-dim factorised codes with in/out projections;
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
        self.vq = VectorQuantize(dim=dim, codebook_size=codebook_size, **opts)
        sync_codebooks_at_runtime(self)

    @property
    def codebook(self) -> Tensor:
        """The codebook (K, codebook_dim)."""
        return self.vq.codebook

    def quantize(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.vq(z)

    def lookup(self, ids: Tensor) -> Tensor:
        return self.vq.get_output_from_indices(ids)

"""SimVQ (Zhu et al. 2024): a frozen random codebook reparameterised by one learned linear map."""
from __future__ import annotations

from torch import Tensor
from vector_quantize_pytorch import SimVQ as LibSimVQ

from .base import Quantizer


class SimVQ(Quantizer):
    """Codes = W @ frozen Gaussian codebook; W is learned, so all codes move together (no collapse)."""

    kind = "simvq"

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        *,
        commitment_weight: float = 1.0,
        input_to_quantize_weight: float = 0.25,
        rotation_trick: bool = True,
        stats_window: int | None = None,
    ):
        super().__init__(dim, codebook_size, 1, stats_window)
        self.simvq = LibSimVQ(
            dim=dim, codebook_size=codebook_size, rotation_trick=rotation_trick,
            commitment_weight=commitment_weight, input_to_quantize_commit_loss_weight=input_to_quantize_weight,
        )

    def quantize(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.simvq(z)

    def lookup(self, ids: Tensor) -> Tensor:
        return self.simvq.indices_to_codes(ids)

"""FSQ: finite scalar quantization (Mentzer et al. 2023): round each of len(levels) dims."""
from __future__ import annotations

import math

from torch import Tensor
from vector_quantize_pytorch import FSQ as LibFSQ

from .base import Quantizer


class FSQ(Quantizer):
    """Bounded rounding to `levels` per dim; codebook_size = prod(levels); no loss, no codebook.

    A linear projection maps dim <-> len(levels) when they differ.
    """

    kind = "fsq"

    def __init__(self, dim: int, levels: list[int], *, preserve_symmetry: bool = False, stats_window: int | None = None):
        if not levels or any(not isinstance(l, int) or l < 2 for l in levels):
            raise ValueError(f"fsq: levels must be a non-empty list of ints >= 2, got {levels!r}")
        if 2 in levels and not preserve_symmetry:
            raise ValueError("fsq: a level of 2 needs preserve_symmetry=True")
        super().__init__(dim, math.prod(levels), 1, stats_window)
        self.levels = list(levels)
        self.fsq = LibFSQ(levels=list(levels), dim=dim, preserve_symmetry=preserve_symmetry)

    def quantize(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        z_q, ids = self.fsq(z)
        return z_q, ids, z.new_zeros(())

    def lookup(self, ids: Tensor) -> Tensor:
        return self.fsq.indices_to_codes(ids)

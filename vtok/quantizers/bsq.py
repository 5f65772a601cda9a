"""BSQ: binary spherical quantization (Zhao et al. 2024): LFQ on the unit sphere."""
from __future__ import annotations

from .lfq import LFQ


class BSQ(LFQ):
    """LFQ whose input and codes are l2-normalised: codes in {-1, 1}^L / sqrt(L), L = log2(K)."""

    kind = "bsq"
    spherical = True

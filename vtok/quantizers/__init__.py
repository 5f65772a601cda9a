"""One quantizer API over vector-quantize-pytorch: `build(kind, dim=..., ...)` -> Quantizer."""
from __future__ import annotations

from .base import Quantizer, QuantizerOutput
from .bsq import BSQ
from .fsq import FSQ
from .grvq import GRVQ
from .lfq import LFQ
from .rvq import RVQ
from .simvq import SimVQ
from .stats import CodeUsage
from .vq import VQ

KINDS: dict[str, type[Quantizer]] = {cls.kind: cls for cls in (VQ, RVQ, GRVQ, FSQ, LFQ, BSQ, SimVQ)}


def build(kind: str, **cfg) -> Quantizer:
    """Build a quantizer by kind ('vq', 'rvq', 'grvq', 'fsq', 'lfq', 'bsq', 'simvq') from keywords."""
    if kind not in KINDS:
        raise ValueError(f"unknown quantizer kind {kind!r}; expected one of {sorted(KINDS)}")
    try:
        return KINDS[kind](**cfg)
    except TypeError as err:  # a missing or unknown keyword: say which kind and what it takes
        raise ValueError(f"quantizer {kind!r}: {err}") from None


__all__ = ["build", "KINDS", "Quantizer", "QuantizerOutput", "CodeUsage", "VQ", "RVQ", "GRVQ", "FSQ", "LFQ", "BSQ", "SimVQ"]

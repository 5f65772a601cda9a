"""One-D-Piece (Miwa et al. 2025): TiTok with 256 tokens and Tail Token Drop, so any prefix decodes.

The architecture is TiTok's legacy two-stage model (see `titok.py`) with K = 256 latent tokens.
Tail Token Drop: in training, one kept length n is drawn uniformly from 1..K per batch and the
decoder sees only the first n quantized tokens (the official code does this in `decode` while
training). The early tokens learn to carry the coarse content, so `encode(x, num_tokens=k)`
returns the first k ids and `decode` accepts any length from 1 to K.

Config: as TiTok's; the releases are S/B/L encoders+decoders, 256 tokens x 4096 codes, token_dim 12.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..registry import register, register_model
from .titok import CPU_64PX, TINY_VIT, TITOK_QUANTIZER, TiTok, titok_config


@register_model
class OneDPiece(TiTok):
    """TiTok whose decoder is trained on random-length token prefixes; ids (B, k) for any k in 1..K."""

    paper = "One-D-Piece: Image Tokenizer Meets Quality-Controllable Compression (Miwa et al., 2025)"
    family = "onedpiece"
    variable_length = True  # any prefix of 1..K ids encodes / decodes

    def drop_tail(self, z_q: Tensor) -> Tensor:
        """Tail Token Drop (training only): keep the first n tokens, n ~ U{1..K}, one n per batch."""
        if not self.training:
            return z_q
        n = int(torch.randint(1, z_q.shape[1] + 1, (1,)))
        return z_q[:, :n]

    def check_num_tokens(self, num_tokens: int | None) -> int:
        """Tokens to keep: None means all K; any 1 <= k <= K otherwise."""
        if num_tokens is None:
            return self.num_tokens
        if not isinstance(num_tokens, int) or not 1 <= num_tokens <= self.num_tokens:
            raise ValueError(f"{self.family}: num_tokens must be an int in 1..{self.num_tokens}, got {num_tokens!r}")
        return num_tokens


for size, enc in [("s", "small"), ("b", "base"), ("l", "large")]:
    register(
        f"onedpiece-{size}-256", OneDPiece, titok_config(256, enc, enc),
        official=f"turing-motors/One-D-Piece-{size.upper()}-256",
        description=f"One-D-Piece-{size.upper()}-256: 1..256 tokens x 4096 codes, two-stage",
        tags=("image", "1d", "variable-length"),
    )
register(
    "onedpiece-tiny", OneDPiece,
    {"image_size": 32, "patch_size": 4, "num_tokens": 16, "token_dim": 8, "encoder": TINY_VIT, "decoder": TINY_VIT,
     "quantizer": {**TITOK_QUANTIZER, "codebook_size": 256}, "legacy": False, "proxy": None},
    description="tiny single-stage config for tests and CPU recipes",
)
register(
    "onedpiece-64px", OneDPiece, CPU_64PX,
    description="shipped: 64x64 photos, 1..32 tokens x 1024 codes (10..320 bits), trained on CPU by "
                "recipes/onedpiece/onedpiece-64px.yaml",
    tags=("image", "1d", "variable-length", "shipped"),
)

"""Pre-norm ViT blocks on scaled_dot_product_attention, batch-first (B, L, D) throughout.

Sizes are named like ViT's: `VIT_SIZES` maps "small" | "base" | "large" to width, depth and
heads (the sizes TiTok and One-D-Piece use); any dict with those three keys works too.
"""
from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

VIT_SIZES: dict[str, dict[str, int]] = {
    "small": {"width": 512, "depth": 8, "heads": 8},
    "base": {"width": 768, "depth": 12, "heads": 12},
    "large": {"width": 1024, "depth": 24, "heads": 16},
}


def vit_size(spec: str | dict[str, Any], who: str) -> dict[str, int]:
    """{"width", "depth", "heads"} for a size name or dict; ValueError naming `who` when malformed."""
    if isinstance(spec, str):
        if spec not in VIT_SIZES:
            raise ValueError(f"{who}: unknown ViT size {spec!r}; expected one of {sorted(VIT_SIZES)} or a dict")
        return dict(VIT_SIZES[spec])
    if not isinstance(spec, dict) or set(spec) != {"width", "depth", "heads"}:
        raise ValueError(f"{who}: expected a ViT size name or a dict with keys width, depth, heads, got {spec!r}")
    width, depth, heads = spec["width"], spec["depth"], spec["heads"]
    if min(width, depth, heads) < 1 or width % heads:
        raise ValueError(f"{who}: expected width, depth, heads >= 1 with width divisible by heads, got {spec}")
    return dict(spec)


class Attention(nn.Module):
    """Multi-head self-attention, fused qkv projection: (B, L, D) -> (B, L, D)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    """Linear -> GELU -> Linear, hidden width ratio * dim."""

    def __init__(self, dim: int, ratio: float = 4.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, int(dim * ratio))
        self.fc2 = nn.Linear(int(dim * ratio), dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, mlp_ratio)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Transformer(nn.Module):
    """A stack of `depth` pre-norm blocks: (B, L, width) -> (B, L, width)."""

    def __init__(self, width: int, depth: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.blocks = nn.ModuleList(Block(width, heads, mlp_ratio) for _ in range(depth))

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return x

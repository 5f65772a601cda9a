"""Shared 2D conv blocks: GroupNorm+SiLU residual block, 2x average-pool down, 2x nearest+conv up."""
from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn


def group_norm(channels: int, groups: int = 32) -> nn.GroupNorm:
    """GroupNorm with the largest group count <= `groups` that divides `channels` (eps 1e-6)."""
    return nn.GroupNorm(math.gcd(groups, channels), channels, eps=1e-6)


class ResnetBlock(nn.Module):
    """Pre-activation residual block (norm, SiLU, 3x3 conv) x2: (B, c_in, H, W) -> (B, c_out, H, W).

    When c_in != c_out a bias-free 1x1 conv `nin_shortcut` fixes the skip. With
    shortcut_on_output=True it maps the residual branch's output instead of the input
    (h + W h): the MaskGIT VQGAN was trained that way, so its released weights need it.
    """

    def __init__(self, c_in: int, c_out: int, *, shortcut_on_output: bool = False):
        super().__init__()
        self.norm1 = group_norm(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.norm2 = group_norm(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.shortcut_on_output = shortcut_on_output
        if c_in != c_out:
            self.nin_shortcut = nn.Conv2d(c_out if shortcut_on_output else c_in, c_out, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        if not hasattr(self, "nin_shortcut"):
            return x + h
        return h + self.nin_shortcut(h if self.shortcut_on_output else x)


class Downsample(nn.Module):
    """2x average pooling, no parameters: (B, C, H, W) -> (B, C, H/2, W/2)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(x, kernel_size=2, stride=2)


class Upsample(nn.Conv2d):
    """2x nearest-neighbour upsampling, then a 3x3 conv: (B, C, H, W) -> (B, C, 2H, 2W).

    A Conv2d subclass so its weights sit directly under the attribute that holds it.
    """

    def __init__(self, channels: int):
        super().__init__(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(F.interpolate(x, scale_factor=2.0, mode="nearest"))

"""Vocos-style decoder blocks (Siuzdak 2023) as WavTokenizer uses them: latents -> STFT -> waveform.

The backbone keeps the frame rate: a k=7 conv embeds the latents, a small "pos-net"
(two GroupNorm/SiLU conv ResNet blocks, one single-head self-attention block over time, two
more ResNet blocks, a GroupNorm) adds context, then ConvNeXt blocks (depthwise k=7 conv,
LayerNorm, MLP, layer scale) refine it. The ISTFT head predicts log-magnitude and phase of
one STFT frame per latent frame and inverts it with "same" padding, so T' frames give
exactly T' * hop_length samples. Submodule names follow the official code so weights map by name.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

GROUPS = 32  # GroupNorm groups in the pos-net


def group_norm(dim: int) -> nn.GroupNorm:
    """GroupNorm over 32 groups, eps 1e-6, as in the pos-net."""
    return nn.GroupNorm(GROUPS, dim, eps=1e-6)


class ResnetBlock(nn.Module):
    """x + conv3(drop(silu(gn(conv3(silu(gn(x))))))): (B, C, T) -> (B, C, T)."""

    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.norm1 = group_norm(dim)
        self.conv1 = nn.Conv1d(dim, dim, 3, padding=1)
        self.norm2 = group_norm(dim)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv1d(dim, dim, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return x + h


class AttentionBlock(nn.Module):
    """x + proj(softmax(q k^T / sqrt(C)) v), one head over time, 1x1-conv projections: (B, C, T) -> (B, C, T)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = group_norm(dim)
        self.q, self.k, self.v = (nn.Conv1d(dim, dim, 1) for _ in range(3))
        self.proj_out = nn.Conv1d(dim, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm(x)
        q, k, v = (proj(h).transpose(1, 2).unsqueeze(1) for proj in (self.q, self.k, self.v))  # (B, 1, T, C)
        h = F.scaled_dot_product_attention(q, k, v).squeeze(1).transpose(1, 2)
        return x + self.proj_out(h)


def pos_net(dim: int, dropout: float) -> nn.Sequential:
    """Two ResNet blocks, attention, two ResNet blocks, GroupNorm: (B, C, T) -> (B, C, T)."""
    return nn.Sequential(
        ResnetBlock(dim, dropout), ResnetBlock(dim, dropout), AttentionBlock(dim),
        ResnetBlock(dim, dropout), ResnetBlock(dim, dropout), group_norm(dim),
    )


class ConvNeXtBlock(nn.Module):
    """x + gamma * MLP(LN(dwconv7(x))): (B, C, T) -> (B, C, T)."""

    def __init__(self, dim: int, intermediate_dim: int, layer_scale: float):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.pwconv2 = nn.Linear(intermediate_dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm(self.dwconv(x).transpose(1, 2))
        h = self.gamma * self.pwconv2(F.gelu(self.pwconv1(h)))
        return x + h.transpose(1, 2)


class VocosBackbone(nn.Module):
    """Latents (B, in_dim, T') -> features (B, T', dim) at the same frame rate."""

    def __init__(self, in_dim: int, dim: int, intermediate_dim: int, num_layers: int, dropout: float = 0.1):
        super().__init__()
        if dim % GROUPS:
            raise ValueError(f"vocos backbone: dim must be a multiple of {GROUPS} (GroupNorm groups), got {dim}")
        self.embed = nn.Conv1d(in_dim, dim, 7, padding=3)
        self.pos_net = pos_net(dim, dropout)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.convnext = nn.ModuleList(ConvNeXtBlock(dim, intermediate_dim, 1.0 / num_layers) for _ in range(num_layers))
        self.final_layer_norm = nn.LayerNorm(dim, eps=1e-6)
        for module in [self.embed, *self.convnext.modules()]:  # the pos-net keeps PyTorch's default init
            if isinstance(module, (nn.Conv1d, nn.Linear)):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def forward(self, z: Tensor) -> Tensor:
        x = self.pos_net(self.embed(z))
        x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        for block in self.convnext:
            x = block(x)
        return self.final_layer_norm(x.transpose(1, 2))


def istft_same(spec: Tensor, n_fft: int, hop_length: int, window: Tensor) -> Tensor:
    """Inverse STFT with "same" padding: complex (B, n_fft // 2 + 1, N) -> (B, N * hop_length).

    Windowed overlap-add normalised by the summed squared window, then (n_fft - hop) / 2 samples
    trimmed from each end; torch.istft cannot trim this way (its NOLA check fails at the edges).
    """
    frames = torch.fft.irfft(spec, n_fft, dim=1) * window[None, :, None]  # (B, n_fft, N)
    n = frames.shape[-1]
    length = (n - 1) * hop_length + n_fft
    fold = dict(output_size=(1, length), kernel_size=(1, n_fft), stride=(1, hop_length))
    y = F.fold(frames, **fold)[:, 0, 0]
    envelope = F.fold(window.square()[None, :, None].expand(1, n_fft, n), **fold)[0, 0, 0]
    pad = (n_fft - hop_length) // 2
    return y[:, pad : length - pad] / envelope[pad : length - pad]


class ISTFTHead(nn.Module):
    """Features (B, T', dim) -> waveform (B, T' * hop_length): per frame log-magnitude and phase of n_fft // 2 + 1 bins."""

    def __init__(self, dim: int, n_fft: int, hop_length: int):
        super().__init__()
        if n_fft % 2 or (n_fft - hop_length) % 2 or n_fft < hop_length:
            raise ValueError(f"istft head: need an even n_fft >= hop_length with n_fft - hop_length even, got {n_fft}, {hop_length}")
        self.n_fft, self.hop_length = n_fft, hop_length
        self.out = nn.Linear(dim, n_fft + 2)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        log_mag, phase = self.out(x).float().transpose(1, 2).chunk(2, dim=1)  # the FFT runs in float32
        mag = log_mag.exp().clamp(max=1e2)  # the official safeguard against huge magnitudes
        spec = torch.complex(mag * phase.cos(), mag * phase.sin())
        return istft_same(spec, self.n_fft, self.hop_length, self.window.float())

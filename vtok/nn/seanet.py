"""SEANet conv encoder/decoder as in EnCodec (Défossez et al. 2022): waveform <-> latent frames.

Layout follows the official `encodec/modules/seanet.py`: weight-normed Conv1d with
"same" (or causal) reflect padding, residual units per resolution (kernels 3 and 1, dilation
2**j for the j-th unit, hidden width halved, 1x1 conv shortcut), strided convs of kernel 2r and stride r,
ELU(1.0) (or DAC's Snake, `activation="snake"`), and a 2-layer LSTM with a skip at the bottleneck. Each module keeps its
layers in one `model` Sequential in the official order, so released weights map
index for index.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm


def pad1d(x: Tensor, left: int, right: int) -> Tensor:
    """Reflect-pad the time axis of x (B, C, T); zero-extends first when T is shorter than the pad."""
    if left == 0 and right == 0:
        return x
    extra = max(left, right) - x.shape[-1] + 1
    if extra > 0:
        return pad1d(F.pad(x, (0, extra)), left, right)[..., :-extra]
    # flipped slices + cat: the same values as F.pad(mode="reflect"), several times faster on CPU
    parts = [x[..., 1 : left + 1].flip(-1)] if left else []
    parts += [x, x[..., -right - 1 : -1].flip(-1)] if right else [x]
    return torch.cat(parts, dim=-1)


class Snake(nn.Module):
    """DAC's periodic activation x + sin²(αx)/α with a learned α per channel (Kumar et al. 2023): (B, C, T) -> same."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        return x + (self.alpha * x).sin().pow(2) / (self.alpha + 1e-9)


def activation(kind: str, channels: int) -> nn.Module:
    """The nonlinearity before each conv: "elu" (EnCodec) or "snake" (DAC) at the given width."""
    if kind == "elu":
        return nn.ELU()
    if kind == "snake":
        return Snake(channels)
    raise ValueError(f"seanet: activation must be 'elu' or 'snake', got {kind!r}")


class SConv1d(nn.Module):
    """Weight-normed Conv1d padded so (B, c_in, T) -> (B, c_out, ceil(T / stride)).

    Non-causal: the kernel's padding is split around the input (one more on the left);
    causal: all of it goes on the left. Extra right padding completes a last partial window.
    """

    def __init__(self, c_in: int, c_out: int, kernel_size: int, *, stride: int = 1, dilation: int = 1, causal: bool = False):
        super().__init__()
        self.conv = weight_norm(nn.Conv1d(c_in, c_out, kernel_size, stride=stride, dilation=dilation))
        self.causal = causal

    def forward(self, x: Tensor) -> Tensor:
        (k,), (s,), (d,) = self.conv.kernel_size, self.conv.stride, self.conv.dilation
        pad = (k - 1) * d - (s - 1)
        frames = math.ceil((x.shape[-1] - k + pad) / s) + 1
        extra = (frames - 1) * s + k - pad - x.shape[-1]
        left = pad if self.causal else pad - pad // 2
        return self.conv(pad1d(x, left, pad - left + extra))


class SConvTranspose1d(nn.Module):
    """Weight-normed ConvTranspose1d (kernel 2r, stride r) trimmed so (B, c_in, T) -> (B, c_out, r * T).

    Causal: the whole overhang is trimmed on the right, so no output depends on later inputs.
    """

    def __init__(self, c_in: int, c_out: int, kernel_size: int, *, stride: int, causal: bool = False):
        super().__init__()
        self.convtr = weight_norm(nn.ConvTranspose1d(c_in, c_out, kernel_size, stride=stride))
        self.causal = causal

    def forward(self, x: Tensor) -> Tensor:
        (k,), (s,) = self.convtr.kernel_size, self.convtr.stride
        pad = k - s
        right = pad if self.causal else pad // 2
        y = self.convtr(x)
        return y[..., pad - right : y.shape[-1] - right]


class SEANetResnetBlock(nn.Module):
    """x + f(x), f = (ELU, conv k dilated, ELU, conv 1) through dim // compress channels: (B, dim, T) -> same."""

    def __init__(self, dim: int, *, kernel_size: int, dilation: int, compress: int, conv_shortcut: bool, causal: bool,
                 act: str = "elu"):
        super().__init__()
        hidden = dim // compress
        self.block = nn.Sequential(
            activation(act, dim), SConv1d(dim, hidden, kernel_size, dilation=dilation, causal=causal),
            activation(act, hidden), SConv1d(hidden, dim, 1, causal=causal),
        )
        self.shortcut = SConv1d(dim, dim, 1, causal=causal) if conv_shortcut else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.shortcut(x) + self.block(x)


class SLSTM(nn.Module):
    """Stacked LSTM over time with a skip connection, in conv layout: (B, C, T) -> (B, C, T)."""

    def __init__(self, dim: int, num_layers: int):
        super().__init__()
        self.lstm = nn.LSTM(dim, dim, num_layers, batch_first=True)

    def forward(self, x: Tensor) -> Tensor:
        x = x.transpose(1, 2)
        return (self.lstm(x)[0] + x).transpose(1, 2)


def residual_blocks(dim: int, n: int, kernel_size: int, dilation_base: int, compress: int, conv_shortcut: bool, causal: bool,
                    act: str = "elu") -> list[nn.Module]:
    """n residual units at width dim, dilations dilation_base**j."""
    return [
        SEANetResnetBlock(dim, kernel_size=kernel_size, dilation=dilation_base**j, compress=compress,
                          conv_shortcut=conv_shortcut, causal=causal, act=act)
        for j in range(n)
    ]


class SEANetEncoder(nn.Module):
    """Waveform (B, in_channels, T) -> latents (B, dim, ceil(T / prod(ratios))).

    `ratios` are given in decoder (upsampling) order, as in EnCodec; the encoder applies
    them reversed, doubling the width from n_filters at each downsampling.
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        dim: int = 128,
        n_filters: int = 32,
        ratios: Sequence[int] = (8, 5, 4, 2),
        n_residual_layers: int = 1,
        lstm_layers: int = 2,
        kernel_size: int = 7,
        last_kernel_size: int = 7,
        residual_kernel_size: int = 3,
        dilation_base: int = 2,
        compress: int = 2,
        conv_shortcut: bool = True,
        causal: bool = False,
        act: str = "elu",
    ):
        super().__init__()
        width = n_filters
        layers: list[nn.Module] = [SConv1d(in_channels, width, kernel_size, causal=causal)]
        for ratio in reversed(ratios):
            layers += residual_blocks(width, n_residual_layers, residual_kernel_size, dilation_base, compress, conv_shortcut, causal, act)
            layers += [activation(act, width), SConv1d(width, 2 * width, 2 * ratio, stride=ratio, causal=causal)]
            width *= 2
        if lstm_layers:
            layers.append(SLSTM(width, lstm_layers))
        layers += [activation(act, width), SConv1d(width, dim, last_kernel_size, causal=causal)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class SEANetDecoder(nn.Module):
    """Latents (B, dim, T') -> waveform (B, out_channels, T' * prod(ratios)), no output activation."""

    def __init__(
        self,
        *,
        out_channels: int = 1,
        dim: int = 128,
        n_filters: int = 32,
        ratios: Sequence[int] = (8, 5, 4, 2),
        n_residual_layers: int = 1,
        lstm_layers: int = 2,
        kernel_size: int = 7,
        last_kernel_size: int = 7,
        residual_kernel_size: int = 3,
        dilation_base: int = 2,
        compress: int = 2,
        conv_shortcut: bool = True,
        causal: bool = False,
        act: str = "elu",
    ):
        super().__init__()
        width = n_filters * 2 ** len(ratios)
        layers: list[nn.Module] = [SConv1d(dim, width, kernel_size, causal=causal)]
        if lstm_layers:
            layers.append(SLSTM(width, lstm_layers))
        for ratio in ratios:
            layers += [activation(act, width), SConvTranspose1d(width, width // 2, 2 * ratio, stride=ratio, causal=causal)]
            width //= 2
            layers += residual_blocks(width, n_residual_layers, residual_kernel_size, dilation_base, compress, conv_shortcut, causal, act)
        layers += [activation(act, width), SConv1d(width, out_channels, last_kernel_size, causal=causal)]
        self.model = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.model(z)

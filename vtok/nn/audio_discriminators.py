"""Audio GAN discriminators: HiFi-GAN's multi-period (MPD) and EnCodec's multi-scale STFT (MS-STFTD).

Every discriminator maps audio (B,1,T) in [-1,1] to (logits, feature maps): a list with one logit
tensor per sub-discriminator and a list of per-layer activations per sub-discriminator, the
shape `gan_d_loss`, `gan_g_loss` and `feature_matching_loss` take.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm
from torchaudio.transforms import Spectrogram

Logits = list[Tensor]
FeatureMaps = list[list[Tensor]]

# HiFi-GAN's period discriminator widths; EnCodec's five STFT scales at 24 kHz (hop = n_fft / 4)
HIFIGAN_PERIODS = (2, 3, 5, 7, 11)
HIFIGAN_PERIOD_CHANNELS = (32, 128, 512, 1024, 1024)
ENCODEC_STFT_FFTS = (1024, 2048, 512, 256, 128)


class PeriodDiscriminator(nn.Module):
    """Audio (B,1,T) folded into (B,1,T/p,p) columns, then (5,1) convs of stride 3 -> logits (B, T'·p)."""

    def __init__(self, period: int, channels: Sequence[int] = HIFIGAN_PERIOD_CHANNELS):
        super().__init__()
        self.period = period
        widths = [1, *channels]
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(c_in, c_out, (5, 1), (3 if i < len(channels) - 1 else 1, 1), (2, 0)))
            for i, (c_in, c_out) in enumerate(zip(widths[:-1], widths[1:]))
        )
        self.post = weight_norm(nn.Conv2d(widths[-1], 1, (3, 1), 1, (1, 0)))

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        pad = -x.shape[-1] % self.period
        x = F.pad(x, (0, pad), mode="reflect" if pad < x.shape[-1] else "constant")
        x = x.view(x.shape[0], 1, -1, self.period)
        fmaps = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.1)
            fmaps.append(x)
        x = self.post(x)
        fmaps.append(x)
        return x.flatten(1), fmaps


class MultiPeriodDiscriminator(nn.Module):
    """One `PeriodDiscriminator` per period (HiFi-GAN: 2, 3, 5, 7, 11); audio (B,1,T) -> (logits, fmaps)."""

    def __init__(self, periods: Sequence[int] = HIFIGAN_PERIODS, channels: Sequence[int] = HIFIGAN_PERIOD_CHANNELS):
        super().__init__()
        self.discriminators = nn.ModuleList(PeriodDiscriminator(p, channels) for p in periods)

    def forward(self, x: Tensor) -> tuple[Logits, FeatureMaps]:
        outs = [d(x) for d in self.discriminators]
        return [o[0] for o in outs], [o[1] for o in outs]


class STFTDiscriminator(nn.Module):
    """EnCodec's DiscriminatorSTFT: complex STFT (real, imag as channels) -> 2D convs over (time, freq).

    A (3,9) conv, then one (3,9) conv of stride (1,2) per time dilation, a (3,3) conv and a (3,3)
    1-channel head, LeakyReLU(0.2); widths `filters * filters_scale**i`, capped at `max_filters`.
    Audio (B,1,T) -> logits (B,1,frames,freq').
    """

    def __init__(self, n_fft: int, filters: int = 32, max_filters: int = 1024, filters_scale: int = 1,
                 dilations: Sequence[int] = (1, 2, 4)):
        super().__init__()
        self.spec = Spectrogram(n_fft=n_fft, hop_length=n_fft // 4, win_length=n_fft, power=None,
                                normalized=True, center=False)
        k = (3, 9)
        convs = [weight_norm(nn.Conv2d(2, filters, k, padding=(1, 4)))]
        width = filters
        for i, dilation in enumerate(dilations):
            out = min(filters_scale ** (i + 1) * filters, max_filters)
            convs.append(weight_norm(nn.Conv2d(width, out, k, stride=(1, 2), dilation=(dilation, 1), padding=(dilation, 4))))
            width = out
        out = min(filters_scale ** (len(dilations) + 1) * filters, max_filters)
        convs.append(weight_norm(nn.Conv2d(width, out, (3, 3), padding=(1, 1))))
        self.convs = nn.ModuleList(convs)
        self.post = weight_norm(nn.Conv2d(out, 1, (3, 3), padding=(1, 1)))

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        z = self.spec(x)  # (B,1,F,frames) complex
        z = torch.cat([z.real, z.imag], dim=1).transpose(2, 3)  # (B,2,frames,F)
        fmaps = []
        for conv in self.convs:
            z = F.leaky_relu(conv(z), 0.2)
            fmaps.append(z)
        z = self.post(z)
        return z, fmaps


class MultiScaleSTFTDiscriminator(nn.Module):
    """One `STFTDiscriminator` per FFT size (EnCodec: 1024, 2048, 512, 256, 128); audio (B,1,T) -> (logits, fmaps)."""

    def __init__(self, n_ffts: Sequence[int] = ENCODEC_STFT_FFTS, filters: int = 32, max_filters: int = 1024):
        super().__init__()
        self.discriminators = nn.ModuleList(STFTDiscriminator(n, filters, max_filters) for n in n_ffts)

    def forward(self, x: Tensor) -> tuple[Logits, FeatureMaps]:
        outs = [d(x) for d in self.discriminators]
        return [o[0] for o in outs], [o[1] for o in outs]


class AudioDiscriminator(nn.Module):
    """MPD and MS-STFTD side by side, their sub-discriminators' logits and feature maps concatenated."""

    def __init__(self, periods: Sequence[int] = HIFIGAN_PERIODS, period_channels: Sequence[int] = HIFIGAN_PERIOD_CHANNELS,
                 n_ffts: Sequence[int] = ENCODEC_STFT_FFTS, stft_filters: int = 32, stft_max_filters: int = 1024):
        super().__init__()
        self.parts = nn.ModuleList()
        if periods:
            self.parts.append(MultiPeriodDiscriminator(periods, period_channels))
        if n_ffts:
            self.parts.append(MultiScaleSTFTDiscriminator(n_ffts, stft_filters, stft_max_filters))
        if not self.parts:
            raise ValueError("audio discriminator: expected at least one period or one STFT size, got neither")

    def forward(self, x: Tensor) -> tuple[Logits, FeatureMaps]:
        logits, fmaps = [], []
        for part in self.parts:
            part_logits, part_fmaps = part(x)
            logits += part_logits
            fmaps += part_fmaps
        return logits, fmaps

"""Audio codec losses: multi-resolution mel (DAC), time-domain L1, GAN (hinge as EnCodec, LS as DAC), feature matching."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchaudio.transforms import MelSpectrogram

from .losses import hinge_d_loss

# DAC's MelSpectrogramLoss: seven windows 32..2048 samples, hop = window/4, mel bins growing with the window
DAC_MEL_WINDOWS = (32, 64, 128, 256, 512, 1024, 2048)
DAC_MEL_BINS = (5, 10, 20, 40, 80, 160, 320)


class MultiResolutionMelLoss(nn.Module):
    """Sum over resolutions of L1 between log10 mel magnitudes (plus optional linear-mel L1) of (B,1,T) audio.

    DAC's values: log_weight 1, mag_weight 0, power 1, clamp 1e-5; the sum is also DAC's "mel distance".
    """

    def __init__(
        self,
        sample_rate: int,
        windows: Sequence[int] = DAC_MEL_WINDOWS,
        n_mels: Sequence[int] = DAC_MEL_BINS,
        log_weight: float = 1.0,
        mag_weight: float = 0.0,
        clamp_eps: float = 1e-5,
    ):
        super().__init__()
        if len(windows) != len(n_mels) or not windows:
            raise ValueError(f"mel loss: expected as many mel bin counts as windows, got {list(windows)} and {list(n_mels)}")
        self.mels = nn.ModuleList(
            MelSpectrogram(sample_rate, n_fft=w, win_length=w, hop_length=w // 4, n_mels=m, power=1.0,
                           norm="slaney", mel_scale="slaney")
            for w, m in zip(windows, n_mels)
        )
        self.log_weight, self.mag_weight, self.clamp_eps = log_weight, mag_weight, clamp_eps

    def forward(self, x_hat: Tensor, x: Tensor) -> Tensor:
        """Scalar loss of reconstructions x_hat against targets x, both (B,1,T)."""
        loss = x.new_zeros(())
        for mel in self.mels:
            m_hat, m = mel(x_hat), mel(x)
            loss = loss + self.log_weight * F.l1_loss(m_hat.clamp_min(self.clamp_eps).log10(), m.clamp_min(self.clamp_eps).log10())
            if self.mag_weight:
                loss = loss + self.mag_weight * F.l1_loss(m_hat, m)
        return loss


def gan_d_loss(real_logits: Sequence[Tensor], fake_logits: Sequence[Tensor], kind: str = "hinge") -> Tensor:
    """Discriminator loss averaged over sub-discriminators; "hinge" (EnCodec) or "lsgan" (HiFi-GAN/DAC)."""
    if kind == "hinge":
        losses = [hinge_d_loss(r, f) for r, f in zip(real_logits, fake_logits)]
    elif kind == "lsgan":
        losses = [(1 - r).pow(2).mean() + f.pow(2).mean() for r, f in zip(real_logits, fake_logits)]
    else:
        raise ValueError(f"gan loss: expected 'hinge' or 'lsgan', got {kind!r}")
    return torch.stack(losses).mean()


def gan_g_loss(fake_logits: Sequence[Tensor], kind: str = "hinge") -> Tensor:
    """Generator adversarial loss averaged over sub-discriminators: EnCodec's relu(1 - D) or LS (1 - D)²."""
    if kind == "hinge":
        losses = [F.relu(1 - f).mean() for f in fake_logits]
    elif kind == "lsgan":
        losses = [(1 - f).pow(2).mean() for f in fake_logits]
    else:
        raise ValueError(f"gan loss: expected 'hinge' or 'lsgan', got {kind!r}")
    return torch.stack(losses).mean()


def feature_matching_loss(real_fmaps: Sequence[Sequence[Tensor]], fake_fmaps: Sequence[Sequence[Tensor]],
                          relative: bool = True) -> Tensor:
    """Mean over all layers of all sub-discriminators of L1(real, fake) feature maps, real ones detached.

    relative=True divides each layer's L1 by mean |real| (EnCodec); False is plain L1 (HiFi-GAN/DAC, up to scale).
    """
    losses = []
    for real_layers, fake_layers in zip(real_fmaps, fake_fmaps):
        for real, fake in zip(real_layers, fake_layers):
            real = real.detach()
            loss = F.l1_loss(fake, real)
            losses.append(loss / (real.abs().mean() + 1e-8) if relative else loss)
    return torch.stack(losses).mean()

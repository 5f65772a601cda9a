"""Lightning training of vtok audio codecs: multi-resolution mel, L1, quantizer, MPD + MS-STFT GAN, feature matching."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics.audio import ScaleInvariantSignalDistortionRatio

from ..nn.audio_discriminators import ENCODEC_STFT_FFTS, HIFIGAN_PERIOD_CHANNELS, HIFIGAN_PERIODS, AudioDiscriminator
from ..nn.audio_losses import (DAC_MEL_BINS, DAC_MEL_WINDOWS, MultiResolutionMelLoss, feature_matching_loss,
                               gan_d_loss, gan_g_loss)
from ..registry import create
from .base import TokenizerTraining


class AudioCodecTraining(TokenizerTraining):
    """Trains the registry audio codec `tokenizer` (config keys overridden by `overrides`) on (B,1,T) audio in [-1,1].

    Generator loss = mel*multi-resolution mel + l1*|x-x̂| + quantizer*q_loss, plus from `gan_start` on
    gan*adversarial + feature*feature matching against a multi-period and a multi-scale STFT
    discriminator, whose step (hinge as EnCodec, or "lsgan" as DAC) comes first, as in both.
    Defaults are EnCodec's weights (λt 0.1, λf 1, λg 3, λfeat 3, λw 1) and optimizer (Adam 3e-4, betas
    0.5/0.9). Validation logs `val/mel_distance` (DAC's mel distance, whatever the training mel) and
    `val/si_sdr` of encode -> decode. At the end of fit, `export_dir` receives the (EMA) weights.
    """

    def __init__(
        self,
        tokenizer: str,
        overrides: dict[str, Any] | None = None,
        mel_weight: float = 1.0,
        mel_windows: Sequence[int] = DAC_MEL_WINDOWS,
        mel_bins: Sequence[int] = DAC_MEL_BINS,
        mel_mag_weight: float = 0.0,
        l1_weight: float = 0.1,
        quantizer_weight: float = 1.0,
        gan_weight: float = 3.0,
        feature_weight: float = 3.0,
        gan_loss: str = "hinge",
        relative_features: bool = True,
        gan_start: int = 0,
        periods: Sequence[int] = HIFIGAN_PERIODS,
        period_channels: Sequence[int] = HIFIGAN_PERIOD_CHANNELS,
        stft_ffts: Sequence[int] = ENCODEC_STFT_FFTS,
        stft_filters: int = 32,
        stft_max_filters: int = 1024,
        lr: float = 3e-4,
        disc_lr: float | None = None,
        betas: tuple[float, float] = (0.5, 0.9),
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        lr_floor: float = 1.0,
        grad_clip: float = 1000.0,
        export_dir: str | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        if gan_loss not in ("hinge", "lsgan"):
            raise ValueError(f"gan_loss: expected 'hinge' or 'lsgan', got {gan_loss!r}")
        self.model = create(tokenizer, **(overrides or {}))
        if self.model.modality != "audio":
            raise ValueError(f"AudioCodecTraining: expected an audio tokenizer, got {tokenizer!r} ({self.model.modality})")
        sample_rate = self.model.sample_rate
        if gan_weight > 0 or feature_weight > 0:
            self.discriminator = AudioDiscriminator(periods, period_channels, stft_ffts, stft_filters, stft_max_filters)
        self.mel_loss = MultiResolutionMelLoss(sample_rate, mel_windows, mel_bins, mag_weight=mel_mag_weight)
        self.mel_distance = MultiResolutionMelLoss(sample_rate)
        self.val_si_sdr = ScaleInvariantSignalDistortionRatio()

    def training_step(self, x: torch.Tensor, batch_idx: int) -> torch.Tensor:
        hp = self.hparams
        opt_g, opt_d = self.split_optimizers()
        out = self.model(x)
        x_hat = out["wav_hat"]
        logs: dict[str, torch.Tensor] = {}
        gan_on = opt_d is not None and self.batches_seen >= hp.gan_start
        if gan_on:
            real_logits, _ = self.discriminator(x)
            fake_logits, _ = self.discriminator(x_hat.detach())
            d_loss = gan_d_loss(real_logits, fake_logits, hp.gan_loss)
            self.backward_step(opt_d, d_loss)
            logs["gan_d"] = d_loss.detach()

        mel, l1 = self.mel_loss(x_hat, x), F.l1_loss(x_hat, x)
        loss = hp.mel_weight * mel + hp.l1_weight * l1 + hp.quantizer_weight * out["loss"]
        logs.update(mel=mel.detach(), l1=l1.detach(), quantizer=out["loss"].detach())
        if gan_on:
            fake_logits, fake_fmaps = self.discriminator(x_hat)
            with torch.no_grad():
                _, real_fmaps = self.discriminator(x)
            adv, feat = gan_g_loss(fake_logits, hp.gan_loss), feature_matching_loss(real_fmaps, fake_fmaps, hp.relative_features)
            loss = loss + hp.gan_weight * adv + hp.feature_weight * feat
            logs.update(gan_g=adv.detach(), feature=feat.detach())
        self.backward_step(opt_g, loss)
        self.finish_step()
        return self.log_step(loss, logs, out["stats"])

    def validation_step(self, x: torch.Tensor, batch_idx: int) -> None:
        x_hat = self.model.decode(self.model.encode(x))[..., : x.shape[-1]]
        self.val_si_sdr.update(x_hat, x)
        self.log("val/mel_distance", self.mel_distance(x_hat, x), prog_bar=True, on_epoch=True, sync_dist=True,
                 batch_size=x.shape[0])
        self.log("val/si_sdr", self.val_si_sdr, prog_bar=True, on_epoch=True, sync_dist=True)

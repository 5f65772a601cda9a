"""Lightning training of any vtok image tokenizer: reconstruction, LPIPS, PatchGAN, quantizer losses."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics.image import PeakSignalNoiseRatio

from ..nn.discriminator import PatchDiscriminator
from ..nn.losses import PerceptualLoss, adaptive_gan_weight, hinge_d_loss, hinge_g_loss
from ..registry import create
from .base import TokenizerTraining, warmup_cosine

__all__ = ["ImageTokenizerTraining", "warmup_cosine"]


class ImageTokenizerTraining(TokenizerTraining):
    """Trains the registry model `tokenizer` (config keys overridden by `overrides`) on images in [0,1].

    Generator loss = l1*|x-x̂| + l2*(x-x̂)² + perceptual*LPIPS + quantizer*q_loss + aux (model's own,
    e.g. proxy-code CE) + gan*adaptive_weight*hinge_g (from `gan_start` on). The discriminator is a
    PatchGAN trained with the hinge loss. Two AdamW optimizers, warmup + cosine, gradient clipping.
    At the end of fit, `export_dir` receives a `save_pretrained` dir of the (EMA, if used) weights.
    """

    def __init__(
        self,
        tokenizer: str,
        overrides: dict[str, Any] | None = None,
        l1_weight: float = 1.0,
        l2_weight: float = 0.0,
        perceptual_weight: float = 0.0,
        perceptual_backbone: str | None = None,
        quantizer_weight: float = 1.0,
        gan_weight: float = 0.0,
        gan_start: int = 0,
        disc_channels: int = 64,
        disc_layers: int = 3,
        lr: float = 1e-4,
        disc_lr: float | None = None,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 1e-4,
        warmup_steps: int = 0,
        lr_floor: float = 0.1,
        grad_clip: float = 1.0,
        export_dir: str | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.model = create(tokenizer, **(overrides or {}))
        self.discriminator = PatchDiscriminator(disc_channels, disc_layers) if gan_weight > 0 else None
        self.perceptual = PerceptualLoss(perceptual_backbone) if perceptual_weight > 0 else None
        self.val_psnr = PeakSignalNoiseRatio(data_range=1.0)

    # --- losses -------------------------------------------------------------------------------
    def generator_loss(self, x: torch.Tensor, out: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        hp = self.hparams
        x_hat = out["x_hat"]
        rec = hp.l1_weight * (x_hat - x).abs().mean() + hp.l2_weight * F.mse_loss(x_hat, x)
        if self.perceptual is not None:
            rec = rec + hp.perceptual_weight * self.perceptual(x_hat, x)
        loss = rec + hp.quantizer_weight * out["loss"] + out.get("aux_loss", 0.0)
        logs = {"rec": rec.detach(), "quantizer": out["loss"].detach()}
        if self.discriminator is not None and self.batches_seen >= hp.gan_start:
            g = hinge_g_loss(self.discriminator(x_hat))
            last = getattr(self.model, "last_layer", None)
            weight = adaptive_gan_weight(rec, g, last) if last is not None and torch.is_grad_enabled() else 1.0
            loss = loss + hp.gan_weight * weight * g
            logs.update(gan_g=g.detach(), gan_weight=torch.as_tensor(weight))
        return loss, logs

    def training_step(self, x: torch.Tensor, batch_idx: int) -> torch.Tensor:
        opt_g, opt_d = self.split_optimizers()
        out = self.model(x)
        loss, logs = self.generator_loss(x, out)
        self.backward_step(opt_g, loss)
        if opt_d is not None and self.batches_seen >= self.hparams.gan_start:
            d_loss = hinge_d_loss(self.discriminator(x), self.discriminator(out["x_hat"].detach()))
            self.backward_step(opt_d, d_loss)
            logs["gan_d"] = d_loss.detach()
        self.finish_step()
        return self.log_step(loss, logs, out["stats"])

    def validation_step(self, x: torch.Tensor, batch_idx: int) -> None:
        x_hat = self.model.decode(self.model.encode(x))
        self.val_psnr.update(x_hat, x)
        self.log("val/psnr", self.val_psnr, prog_bar=True, on_epoch=True, sync_dist=True)

"""Lightning training of any vtok image tokenizer: reconstruction, LPIPS, PatchGAN, quantizer losses."""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics.image import PeakSignalNoiseRatio

from ..nn.discriminator import PatchDiscriminator
from ..nn.losses import PerceptualLoss, adaptive_gan_weight, hinge_d_loss, hinge_g_loss, lecam_loss
from ..hub import WEIGHTS, load, load_weights_strict
from ..registry import create
from .base import TokenizerTraining, warmup_cosine

__all__ = ["ImageTokenizerTraining", "image_training_args", "warmup_cosine"]


class ImageTokenizerTraining(TokenizerTraining):
    """Trains the registry model `tokenizer` (config keys overridden by `overrides`) on images in [0,1].

    Generator loss = l1*|x-x̂| + l2*(x-x̂)² + perceptual*LPIPS + quantizer*q_loss
    + proxy*CE(proxy logits, proxy codes) + gan*w*hinge_g (from `gan_start` on; w = VQGAN's
    adaptive weight, or 1 with adaptive_gan_weight=False as TiTok's stage 2 does).
    The discriminator is a PatchGAN trained with the hinge loss, plus lecam_weight * LeCam
    regularisation (EMA decay lecam_decay) if set. Two AdamW optimizers, warmup +
    cosine, gradient clipping. At the end of fit, `export_dir` receives a `save_pretrained` dir of
    the (EMA, if used) weights.

    Two-stage training (TiTok's legacy models): stage 1 sets `proxy_tokenizer` (a trained VQGAN:
    registry name, directory or Hub id; or a registry name plus `proxy_official_weights`, a
    safetensors file of the official release), whose codes of each batch are the targets of the model's
    proxy head and whose codebook + decoder are copied into the model, frozen by `freeze`;
    stage 2 starts from stage 1's export with `init_from` and freezes the encoder side.
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
        adaptive_gan_weight: bool = True,
        lecam_weight: float = 0.0,
        lecam_decay: float = 0.999,
        disc_channels: int = 64,
        disc_layers: int = 3,
        lr: float = 1e-4,
        disc_lr: float | None = None,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 1e-4,
        warmup_steps: int = 0,
        lr_floor: float = 0.1,
        grad_clip: float = 1.0,
        proxy_tokenizer: str | None = None,
        proxy_official_weights: str | None = None,
        proxy_weight: float = 1.0,
        freeze: list[str] | None = None,
        init_from: str | None = None,
        export_dir: str | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.model = create(tokenizer, **(overrides or {}))
        if init_from is not None:
            load_weights_strict(self.model, Path(init_from) / WEIGHTS)
        self.proxy = None
        if proxy_tokenizer is not None:
            self.proxy = load(proxy_tokenizer, official_weights=proxy_official_weights).requires_grad_(False).eval()
            if init_from is None:
                self.model.load_proxy(self.proxy)
        self.freeze(freeze or [])
        self.discriminator = PatchDiscriminator(disc_channels, disc_layers) if gan_weight > 0 else None
        self.perceptual = PerceptualLoss(perceptual_backbone) if perceptual_weight > 0 else None
        self.register_buffer("lecam_ema", torch.zeros(2))  # EMA of the mean real and fake logits
        self.val_psnr = PeakSignalNoiseRatio(data_range=1.0)

    def freeze(self, prefixes: list[str]) -> None:
        """Stop training the model's parameters and submodules whose names start with one of `prefixes`.

        Frozen submodules also stay in eval mode, so EMA codebooks (buffers) stop updating too.
        """
        names = [n for n, _ in self.model.named_parameters()] + [n for n, _ in self.model.named_buffers()]
        for prefix in prefixes:
            if not any(n.startswith(prefix) for n in names):
                raise ValueError(f"freeze: no parameter or buffer of {self.hparams.tokenizer} starts with {prefix!r}")
        for name, p in self.model.named_parameters():
            if any(name.startswith(prefix) for prefix in prefixes):
                p.requires_grad_(False)
        modules = dict(self.model.named_modules())
        self.frozen_modules = [modules[p] for p in prefixes if p in modules]

    def train(self, mode: bool = True) -> "ImageTokenizerTraining":
        super().train(mode)
        for module in getattr(self, "frozen_modules", []):
            module.eval()
        return self

    # --- losses -------------------------------------------------------------------------------
    def generator_loss(self, x: torch.Tensor, out: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        hp = self.hparams
        x_hat = out["x_hat"]
        rec = hp.l1_weight * (x_hat - x).abs().mean() + hp.l2_weight * F.mse_loss(x_hat, x)
        if self.perceptual is not None:
            rec = rec + hp.perceptual_weight * self.perceptual(x_hat, x)
        loss = rec + hp.quantizer_weight * out["loss"]
        logs = {"rec": rec.detach(), "quantizer": out["loss"].detach()}
        if "aux_loss" in out:
            loss = loss + hp.proxy_weight * out["aux_loss"]
            logs["proxy_ce"] = out["aux_loss"].detach()
        if self.discriminator is not None and self.batches_seen >= hp.gan_start:
            g = hinge_g_loss(self.discriminator(x_hat))
            last = getattr(self.model, "last_layer", None) if hp.adaptive_gan_weight else None
            weight = adaptive_gan_weight(rec, g, last) if last is not None and torch.is_grad_enabled() else 1.0
            loss = loss + hp.gan_weight * weight * g
            logs.update(gan_g=g.detach(), gan_weight=torch.as_tensor(weight))
        return loss, logs

    def training_step(self, x: torch.Tensor, batch_idx: int) -> torch.Tensor:
        opt_g, opt_d = self.split_optimizers()
        targets = {"proxy_codes": self.proxy.encode(x)} if self.proxy is not None else {}
        out = self.model(x, **targets)
        loss, logs = self.generator_loss(x, out)
        self.backward_step(opt_g, loss)
        if opt_d is not None and self.batches_seen >= self.hparams.gan_start:
            real, fake = self.discriminator(x), self.discriminator(out["x_hat"].detach())
            d_loss = hinge_d_loss(real, fake)
            if self.hparams.lecam_weight > 0:
                d_loss = d_loss + self.hparams.lecam_weight * lecam_loss(real, fake, *self.lecam_ema)
                means = torch.stack([real.mean(), fake.mean()]).detach()
                self.lecam_ema.lerp_(means, 1 - self.hparams.lecam_decay)
            self.backward_step(opt_d, d_loss)
            logs["gan_d"] = d_loss.detach()
        self.finish_step()
        return self.log_step(loss, logs, out["stats"])

    def validation_step(self, x: torch.Tensor, batch_idx: int) -> None:
        x_hat = self.model.decode(self.model.encode(x))
        self.val_psnr.update(x_hat, x)
        self.log("val/psnr", self.val_psnr, prog_bar=True, on_epoch=True, sync_dist=True)


def image_training_args(values: dict[str, Any]) -> dict[str, Any]:
    """ImageTokenizerTraining's init arguments found in `values` (a subclass __init__'s locals()).

    Subclasses repeat the parameters they share with ImageTokenizerTraining in their own signature
    (LightningCLI reads only that one); this forwards every one of them without listing them twice.
    """
    names = inspect.signature(ImageTokenizerTraining.__init__).parameters
    return {name: values[name] for name in names if name != "self" and name in values}

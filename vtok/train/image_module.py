"""Lightning training of any vtok image tokenizer: reconstruction, LPIPS, PatchGAN, quantizer losses."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics.image import PeakSignalNoiseRatio

from ..nn.discriminator import PatchDiscriminator
from ..nn.losses import PerceptualLoss, adaptive_gan_weight, hinge_d_loss, hinge_g_loss
from ..registry import create


def warmup_cosine(step: int, warmup: int, total: int, floor: float = 0.0) -> float:
    """LR factor: linear warmup over `warmup` steps, then cosine decay to `floor` at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


class ImageTokenizerTraining(L.LightningModule):
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
        self.automatic_optimization = False  # two optimizers, adaptive GAN weight
        self.model = create(tokenizer, **(overrides or {}))
        self.discriminator = PatchDiscriminator(disc_channels, disc_layers) if gan_weight > 0 else None
        self.perceptual = PerceptualLoss(perceptual_backbone) if perceptual_weight > 0 else None
        self.val_psnr = PeakSignalNoiseRatio(data_range=1.0)
        self.batches_seen = 0  # for resuming the data order exactly; saved in checkpoints
        self._resume_rng: torch.Tensor | None = None

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
        opts = self.optimizers()
        opt_g, opt_d = opts if isinstance(opts, list) else (opts, None)
        scheds = self.lr_schedulers()
        out = self.model(x)
        loss, logs = self.generator_loss(x, out)
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        self.clip_gradients(opt_g, gradient_clip_val=self.hparams.grad_clip, gradient_clip_algorithm="norm")
        opt_g.step()
        if opt_d is not None and self.batches_seen >= self.hparams.gan_start:
            d_loss = hinge_d_loss(self.discriminator(x), self.discriminator(out["x_hat"].detach()))
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(d_loss)
            self.clip_gradients(opt_d, gradient_clip_val=self.hparams.grad_clip, gradient_clip_algorithm="norm")
            opt_d.step()
            logs["gan_d"] = d_loss.detach()
        for sched in scheds if isinstance(scheds, list) else [scheds]:
            sched.step()
        self.batches_seen += 1
        stats = {f"codebook/{k}": v for k, v in out["stats"].items()}
        self.log_dict({"train/loss": loss.detach(), **{f"train/{k}": v for k, v in logs.items()}, **stats},
                      prog_bar=False, on_step=True)
        self.log("loss", loss.detach(), prog_bar=True, on_step=True, logger=False)
        return loss.detach()

    def validation_step(self, x: torch.Tensor, batch_idx: int) -> None:
        x_hat = self.model.decode(self.model.encode(x))
        self.val_psnr.update(x_hat, x)
        self.log("val/psnr", self.val_psnr, prog_bar=True, on_epoch=True, sync_dist=True)

    # --- optimisation -------------------------------------------------------------------------
    def configure_optimizers(self):
        hp = self.hparams
        total = self.trainer.max_steps if self.trainer.max_steps > 0 else self.trainer.estimated_stepping_batches

        def schedule(step: int) -> float:
            return warmup_cosine(step, hp.warmup_steps, total, hp.lr_floor)

        opt_g = torch.optim.AdamW(self.model.parameters(), lr=hp.lr, betas=hp.betas, weight_decay=hp.weight_decay)
        optimizers, schedulers = [opt_g], [torch.optim.lr_scheduler.LambdaLR(opt_g, schedule)]
        if self.discriminator is not None:
            opt_d = torch.optim.AdamW(self.discriminator.parameters(), lr=hp.disc_lr or hp.lr, betas=hp.betas,
                                      weight_decay=hp.weight_decay)
            optimizers.append(opt_d)
            schedulers.append(torch.optim.lr_scheduler.LambdaLR(opt_d, schedule))
        return optimizers, schedulers

    # --- exact resume -------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["vtok"] = {"batches_seen": self.batches_seen, "torch_rng": torch.get_rng_state()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("vtok", {})
        self.batches_seen = state.get("batches_seen", 0)
        self._resume_rng = state.get("torch_rng")

    def on_train_start(self) -> None:
        if self._resume_rng is None:
            return
        torch.set_rng_state(self._resume_rng)
        self._resume_rng = None
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "resume_at"):
            per_epoch = len(self.trainer.train_dataloader)
            datamodule.resume_at(self.batches_seen // per_epoch, self.batches_seen % per_epoch)

    # --- export -------------------------------------------------------------------------------
    def on_fit_end(self) -> None:
        if self.hparams.export_dir and self.trainer.is_global_zero:
            self.model.save_pretrained(Path(self.hparams.export_dir), model_card_kwargs={"name": self.hparams.tokenizer})

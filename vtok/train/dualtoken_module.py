"""Lightning training of DualToken (vtok/image/dualtoken.py): the pixel losses of the image tokenizers, the
quantizers' commitment losses and the semantic distillation loss against the frozen SigLIP teacher."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..nn.losses import adaptive_gan_weight, hinge_g_loss
from .base import warmup_cosine
from .image_module import ImageTokenizerTraining, image_training_args


def semantic_mix(pred: torch.Tensor, target: torch.Tensor, pooled: torch.Tensor | None,
                 teacher_pooled: torch.Tensor | None) -> torch.Tensor:
    """The official semantic loss: 5 (mse + 1 - cos) of the token features + (mse + 1 - cos) of the pooled
    embeddings (the latter left out when the model has no pooling head)."""
    pred, target = pred.float(), target.float()
    loss = 5 * (F.mse_loss(pred, target) + (1 - F.cosine_similarity(pred, target, dim=-1)).mean())
    if pooled is not None and teacher_pooled is not None:
        pooled, teacher_pooled = pooled.float(), teacher_pooled.float()
        loss = loss + F.mse_loss(pooled, teacher_pooled) + (1 - F.cosine_similarity(pooled, teacher_pooled, dim=-1)).mean()
    return loss


class DualTokenTraining(ImageTokenizerTraining):
    """Trains a registry DualToken (config keys overridden by `overrides`) on images (B,3,S,S) in [0,1].

    Generator loss = l1*|x-x̂| + l2*(x-x̂)² + perceptual*LPIPS + quantizer*(pixel + semantic commitment)
    + semantic*L_sem + gan*w*hinge_g (from `gan_start` on), with L_sem the model's `semantic_loss`: the
    semantic codes' prediction of the teacher's hidden state after `semantic_layer` and the pooled embedding
    our ViT makes from it, each against the frozen teacher's, 5 (mse + 1 - cos) + (mse + 1 - cos) (the
    official stage-1 mix; the official -cos differs by a constant). Pixel losses are measured on images
    in [0,1]: the official MSE is on images in [-1,1], 4 times ours, so its weight 5 is l2_weight 20 here.

    w is the adaptive weight when `adaptive_gan_weight`: |grad R| / |grad hinge_g| at the decoder's last
    layer, clamped to `adaptive_weight_range`, where R is the official reference, the unit-weight pixel
    losses on images in [-1,1]: 4*MSE + 2*L1 (each only if its weight is nonzero) + LPIPS. Otherwise w = 1.

    Optimizers: AdamW with weight decay on the generator's matrices only (biases, norms and other 1-d
    parameters undecayed, as the official param groups), the discriminator undecayed (official: Adam,
    weight_decay 0). The schedule, PatchGAN, EMA, resume and export are ImageTokenizerTraining's.

    Training starts from the teacher: its vision tower is copied into the model's ViT (`init_from_teacher`)
    unless `init_from` (a save_pretrained dir) gives all the weights. The teacher itself stays outside the
    module's parameters, state dict and checkpoints, and the EMA callback's copy of the module shares it
    instead of copying it. Validation logs val/psnr (ids -> pixel decoder), val/semantic (ids -> semantic
    prediction -> the official mix against the teacher) and val/semantic_cos (its 1 - cos of the token
    features) on the held-out split.
    """

    def __init__(
        self,
        tokenizer: str,
        overrides: dict[str, Any] | None = None,
        semantic_weight: float = 1.0,
        l1_weight: float = 0.0,
        l2_weight: float = 20.0,
        perceptual_weight: float = 0.0,
        perceptual_backbone: str | None = None,
        quantizer_weight: float = 5.0,
        gan_weight: float = 0.0,
        gan_start: int = 0,
        adaptive_gan_weight: bool = True,
        adaptive_weight_range: tuple[float, float] = (0.3, 10.0),
        lecam_weight: float = 0.0,
        lecam_decay: float = 0.999,
        disc_channels: int = 64,
        disc_layers: int = 3,
        lr: float = 7.2e-5,
        disc_lr: float | None = None,
        betas: tuple[float, float] = (0.5, 0.9),
        weight_decay: float = 1e-4,
        warmup_steps: int = 0,
        lr_floor: float = 0.0,
        grad_clip: float = 0.0,
        freeze: list[str] | None = None,
        init_from: str | None = None,
        export_dir: str | None = None,
    ):
        super().__init__(**image_training_args(locals()))
        self.save_hyperparameters()  # every hparam the parent reads is an argument here (LightningCLI saves only these)
        if not hasattr(self.model, "teacher_features") or not hasattr(self.model, "quantizer_sem"):
            raise ValueError(f"DualTokenTraining: {tokenizer!r} is not a DualToken model (no semantic teacher)")
        low, high = adaptive_weight_range
        if not 0 <= low <= high:
            raise ValueError(f"DualTokenTraining: adaptive_weight_range must be (low, high) with 0 <= low <= high, "
                             f"got {adaptive_weight_range}")
        if init_from is None:
            self.model.init_from_teacher()

    def teacher_parameters(self) -> list[torch.nn.Parameter]:
        """The frozen teacher's parameters (never trained, never saved)."""
        return list(self.model.teacher().parameters())

    # --- losses -------------------------------------------------------------------------------
    def generator_loss(self, x: torch.Tensor, out: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        hp = self.hparams
        x_hat = out["x_hat"]
        l1, l2 = (x_hat - x).abs().mean(), F.mse_loss(x_hat, x)
        rec = hp.l1_weight * l1 + hp.l2_weight * l2
        reference = (2 * l1 if hp.l1_weight else 0) + (4 * l2 if hp.l2_weight else 0)  # unit weights on [-1,1] images
        if self.perceptual is not None:
            lpips = self.perceptual(x_hat, x)
            rec, reference = rec + hp.perceptual_weight * lpips, reference + lpips
        semantic = out["semantic_loss"]
        loss = rec + hp.quantizer_weight * out["loss"] + hp.semantic_weight * semantic
        logs = {"rec": rec.detach(), "quantizer": out["loss"].detach(), "semantic": semantic.detach(),
                "semantic_cos": out["semantic_cos"].detach(), "semantic_mse": out["semantic_mse"].detach(),
                "commitment_pixel": out["loss_pixel"].detach(), "commitment_semantic": out["loss_semantic"].detach()}
        if "pooled_cos" in out:
            logs["pooled_cos"] = out["pooled_cos"].detach()
        if self.discriminator is not None and self.batches_seen >= hp.gan_start:
            g = hinge_g_loss(self.discriminator(x_hat))
            weight = 1.0
            if hp.adaptive_gan_weight and torch.is_grad_enabled() and torch.is_tensor(reference):
                weight = adaptive_gan_weight(reference, g, self.model.last_layer).clamp(*hp.adaptive_weight_range)
            loss = loss + hp.gan_weight * weight * g
            logs.update(gan_g=g.detach(), gan_weight=torch.as_tensor(weight))
        return loss, logs

    # --- optimisation -------------------------------------------------------------------------
    def configure_optimizers(self):
        hp = self.hparams
        total = self.schedule_total()

        def schedule(step: int) -> float:
            return warmup_cosine(step, hp.warmup_steps, total, hp.lr_floor)

        trained = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        groups = [{"params": [p for n, p in trained if p.ndim < 2 or n.endswith("bias")], "weight_decay": 0.0},
                  {"params": [p for n, p in trained if not (p.ndim < 2 or n.endswith("bias"))], "weight_decay": hp.weight_decay}]
        opt_g = torch.optim.AdamW(groups, lr=hp.lr, betas=hp.betas)
        optimizers, schedulers = [opt_g], [torch.optim.lr_scheduler.LambdaLR(opt_g, schedule)]
        if self.discriminator is not None:
            opt_d = torch.optim.AdamW(self.discriminator.parameters(), lr=hp.disc_lr or hp.lr, betas=hp.betas, weight_decay=0.0)
            optimizers.append(opt_d)
            schedulers.append(torch.optim.lr_scheduler.LambdaLR(opt_d, schedule))
        return optimizers, schedulers

    # --- validation ---------------------------------------------------------------------------
    def held_out_losses(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Images -> (reconstruction from the ids (B,3,S,S) in [0,1], the official semantic mix from the ids,
        1 - cos of the semantic prediction to the teacher's token features); no codebook update."""
        ids = self.model.encode(x)
        pred = self.model.decode_semantic(ids)
        target, teacher_pooled = self.model.teacher_features(x)
        cos = (1 - F.cosine_similarity(pred.float(), target.float(), dim=-1)).mean()
        return self.model.decode(ids), semantic_mix(pred, target, self.model.pool(pred), teacher_pooled), cos

    def validation_step(self, x: torch.Tensor, batch_idx: int) -> None:
        x_hat, semantic, cos = self.held_out_losses(x)
        self.val_psnr.update(x_hat, x)
        self.log("val/psnr", self.val_psnr, prog_bar=True, on_epoch=True, sync_dist=True)
        self.log("val/semantic", semantic, prog_bar=True, on_epoch=True, sync_dist=True, batch_size=x.shape[0])
        self.log("val/semantic_cos", cos, on_epoch=True, sync_dist=True, batch_size=x.shape[0])

"""Lightning training of TokenFlow (vtok/image/dualcodebook.py): the pixel losses of the image tokenizers plus
the semantic distillation loss against the frozen teacher."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .image_module import ImageTokenizerTraining, image_training_args

SEMANTIC_LOSSES = ("cosine", "l2")


class TokenFlowTraining(ImageTokenizerTraining):
    """Trains a registry TokenFlow (config keys overridden by `overrides`) on images (B,3,S,S) in [0,1].

    Generator loss = l1*|x-x̂| + l2*(x-x̂)² + perceptual*LPIPS + quantizer*(codebook + beta*commitment)
    + semantic*L_sem + gan*w*hinge_g (from `gan_start` on), where L_sem compares the semantic decoder's
    prediction with the frozen teacher's features: mean over tokens of 1 - cos ("cosine", the official
    loss) or their mean squared difference ("l2"). w is VQGAN's adaptive weight measured at the model's
    `last_layer` when `adaptive_gan_weight`, else 1 (the official TokenFlow setting). The pixel losses,
    PatchGAN, optimizers, schedule, resume and export are ImageTokenizerTraining's.

    Training starts from the teacher: its vision tower is copied into the semantic encoder
    (`init_from_teacher`) unless `init_from` (a save_pretrained dir) gives all the weights. The teacher
    itself stays outside the module's parameters, state dict and checkpoints, and the EMA callback's copy
    of the module shares it instead of copying it. Validation logs val/psnr (ids -> pixel decoder) and
    val/semantic (ids -> semantic decoder, cosine loss to the teacher) on the held-out split.
    """

    def __init__(
        self,
        tokenizer: str,
        overrides: dict[str, Any] | None = None,
        semantic_weight: float = 1.0,
        semantic_loss: str = "cosine",
        l1_weight: float = 0.0,
        l2_weight: float = 1.0,
        perceptual_weight: float = 0.0,
        perceptual_backbone: str | None = None,
        quantizer_weight: float = 1.0,
        gan_weight: float = 0.0,
        gan_start: int = 0,
        adaptive_gan_weight: bool = False,
        lecam_weight: float = 0.0,
        lecam_decay: float = 0.999,
        disc_channels: int = 64,
        disc_layers: int = 3,
        lr: float = 1e-4,
        disc_lr: float | None = None,
        betas: tuple[float, float] = (0.9, 0.95),
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        lr_floor: float = 1.0,
        grad_clip: float = 1.0,
        freeze: list[str] | None = None,
        init_from: str | None = None,
        export_dir: str | None = None,
    ):
        if semantic_loss not in SEMANTIC_LOSSES:
            raise ValueError(f"TokenFlowTraining: semantic_loss must be one of {SEMANTIC_LOSSES}, got {semantic_loss!r}")
        super().__init__(**image_training_args(locals()))
        self.save_hyperparameters()  # every hparam the parent reads is an argument here (LightningCLI saves only these)
        if not hasattr(self.model, "teacher_features") or not hasattr(self.model, "decode_semantic"):
            raise ValueError(f"TokenFlowTraining: {tokenizer!r} is not a TokenFlow model (no semantic teacher)")
        if init_from is None:
            self.model.init_from_teacher()

    def teacher_parameters(self) -> list[torch.nn.Parameter]:
        """The frozen teacher's parameters (never trained, never saved)."""
        return list(self.model.teacher().parameters())

    # --- losses -------------------------------------------------------------------------------
    def semantic_loss(self, out: dict[str, Any]) -> torch.Tensor:
        if self.hparams.semantic_loss == "cosine":
            return out["semantic_loss"]
        return F.mse_loss(out["semantic"].float(), out["teacher"].float())

    def generator_loss(self, x: torch.Tensor, out: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss, logs = super().generator_loss(x, out)
        semantic = self.semantic_loss(out)
        logs.update(semantic=semantic.detach(), codebook=out["codebook_loss"].detach(),
                    commitment=out["commitment_loss"].detach())
        return loss + self.hparams.semantic_weight * semantic, logs

    def validation_step(self, x: torch.Tensor, batch_idx: int) -> None:
        ids = self.model.encode(x)
        self.val_psnr.update(self.model.decode(ids), x)
        self.log("val/psnr", self.val_psnr, prog_bar=True, on_epoch=True, sync_dist=True)
        pred, target = self.model.decode_semantic(ids).float(), self.model.teacher_features(x).float()
        semantic = (1 - F.cosine_similarity(pred, target, dim=-1)).mean()
        self.log("val/semantic", semantic, prog_bar=True, on_epoch=True, sync_dist=True, batch_size=x.shape[0])

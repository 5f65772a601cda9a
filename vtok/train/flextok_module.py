"""Lightning training of FlexTok: the rectified-flow loss of the decoder, nested dropout and FSQ inside the model."""
from __future__ import annotations

from typing import Any

import torch
from torchmetrics.image import PeakSignalNoiseRatio

from ..registry import create
from .base import TokenizerTraining


class FlexTokTraining(TokenizerTraining):
    """Trains a registry FlexTok (config keys overridden by `overrides`) on images (B,3,S,S) in [0,1].

    The loss is the model's own: MSE between the decoder's velocity and noise - x0 at logit-normal
    times, with nested dropout of the registers and null-condition dropout for guidance. Validation
    decodes the first k ids for each k in `val_tokens` with `val_steps` Euler steps (seeded) and logs
    `val/psnr_k{k}`; `val/psnr` is the one at all tokens. The EMA callback's weights are validated and exported.
    """

    def __init__(
        self,
        tokenizer: str,
        overrides: dict[str, Any] | None = None,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        lr_floor: float = 0.1,
        grad_clip: float = 1.0,
        val_tokens: list[int] | None = None,
        val_steps: int = 10,
        export_dir: str | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.hparams.gan_start = 0  # no discriminator: the schedule spans every step
        self.model = create(tokenizer, **(overrides or {}))
        if not getattr(self.model, "variable_length", False) or not hasattr(self.model, "sample_keep"):
            raise ValueError(f"FlexTokTraining: {tokenizer!r} is not a FlexTok model")
        r = self.model.num_tokens
        self.val_tokens = sorted({self.model.check_num_tokens(k) for k in (val_tokens or [1, max(1, r // 4), r])})
        self.val_psnr = torch.nn.ModuleDict({str(k): PeakSignalNoiseRatio(data_range=1.0) for k in self.val_tokens})

    def training_step(self, x: torch.Tensor, batch_idx: int) -> torch.Tensor:
        opt, _ = self.split_optimizers()
        out = self.model(x)
        self.backward_step(opt, out["loss"])
        self.finish_step()
        return self.log_step(out["loss"], {"flow": out["loss"].detach()}, out["stats"])

    def validation_step(self, x: torch.Tensor, batch_idx: int) -> None:
        ids = self.model.encode(x)
        for k in self.val_tokens:
            x_hat = self.model.decode(ids[:, :k], steps=self.hparams.val_steps, seed=batch_idx)
            self.val_psnr[str(k)].update(x_hat, x)
            self.log(f"val/psnr_k{k}", self.val_psnr[str(k)], on_epoch=True, sync_dist=True)
        self.log("val/psnr", self.val_psnr[str(self.val_tokens[-1])], prog_bar=True, on_epoch=True, sync_dist=True)

"""Training callbacks: an EMA of the weights that leaves codebook buffers alone."""
from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging


class WeightEMA(EMAWeightAveraging):
    """EMA of the parameters (used for validation and export); buffers follow the live model.

    Lightning's EMAWeightAveraging also averages buffers, which here hold EMA codebooks and code
    usage: averaging an EMA codebook a second time blurs it across dead-code restarts and leaves
    it out of step with the encoder (measured on the titok tiny recipe: 7.6 dB held-out PSNR with
    averaged buffers, 14.5 dB with the live ones). Its `use_buffers=False` instead keeps the
    buffers of the step the average was created, so this callback copies the live buffers in.
    """

    def __init__(self, decay: float = 0.999, update_every_n_steps: int = 1, update_starting_at_step: int | None = None,
                 **kwargs: Any):
        super().__init__(decay=decay, use_buffers=False, update_every_n_steps=update_every_n_steps,
                         update_starting_at_step=update_starting_at_step, **kwargs)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        with torch.no_grad():
            for average, live in zip(self._average_model.module.buffers(), pl_module.buffers()):
                average.copy_(live)

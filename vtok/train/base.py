"""What every vtok training module shares: generator + discriminator optimizers, warmup + cosine,
exact resume (data position and torch RNG in the checkpoint), export of the final weights."""
from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch


def warmup_cosine(step: int, warmup: int, total: int, floor: float = 0.0) -> float:
    """LR factor: linear warmup over `warmup` steps, then cosine decay to `floor` at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


class TokenizerTraining(L.LightningModule):
    """Base of the training modules: subclasses set `self.model` (a registry tokenizer) and
    `self.discriminator` (or None), and have hparams tokenizer, lr, disc_lr, betas, weight_decay,
    warmup_steps, lr_floor, grad_clip, gan_start and export_dir. Manual optimization; `batches_seen` counts steps.
    """

    def __init__(self):
        super().__init__()
        self.automatic_optimization = False  # two optimizers, GAN schedules
        self.discriminator: torch.nn.Module | None = None
        self.batches_seen = 0  # for resuming the data order exactly; saved in checkpoints
        self._resume_rng: torch.Tensor | None = None

    def split_optimizers(self) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer | None]:
        """(generator optimizer, discriminator optimizer or None)."""
        opts = self.optimizers()
        return opts if isinstance(opts, list) else (opts, None)

    def backward_step(self, optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        """Zero grads, backpropagate `loss`, clip by norm to `grad_clip`, step `optimizer`."""
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        self.clip_gradients(optimizer, gradient_clip_val=self.hparams.grad_clip, gradient_clip_algorithm="norm")
        optimizer.step()

    def finish_step(self) -> None:
        """Advance every LR schedule and the step count; call once at the end of each training step."""
        scheds = self.lr_schedulers()
        for sched in scheds if isinstance(scheds, list) else [scheds]:
            sched.step()
        self.batches_seen += 1

    def log_step(self, loss: torch.Tensor, logs: dict[str, torch.Tensor], stats: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Log the step's loss, its parts and the codebook stats; returns the detached loss."""
        codebook = {f"codebook/{k}": v for k, v in stats.items()}
        self.log_dict({"train/loss": loss.detach(), **{f"train/{k}": v for k, v in logs.items()}, **codebook},
                      prog_bar=False, on_step=True)
        self.log("loss", loss.detach(), prog_bar=True, on_step=True, logger=False)
        return loss.detach()

    # --- optimisation -------------------------------------------------------------------------
    def schedule_total(self) -> int:
        """Training batches the LR schedule spans: from `max_steps` (Lightning counts every optimizer
        step, so two per batch once the GAN is on at `gan_start`), else Lightning's estimate."""
        steps, start = self.trainer.max_steps, self.hparams.gan_start
        if steps <= 0:
            return self.trainer.estimated_stepping_batches
        if self.discriminator is None or steps <= start:
            return steps
        return (steps + start) // 2

    def configure_optimizers(self):
        hp = self.hparams
        total = self.schedule_total()

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

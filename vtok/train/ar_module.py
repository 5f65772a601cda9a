"""Lightning training of the AR GPT on token shards: next-token cross-entropy, bits per token, exact resume."""
from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from ..ar.gpt import GPT
from ..ar.sequence import IGNORE, SequenceFormat
from .base import warmup_cosine


class ARTraining(L.LightningModule):
    """A GPT over the sequences of `vtok.ar.sequence` built from the data module's shard meta.

    Logs `train/loss` (nats) and `val/bits_per_token` (cross-entropy over code targets only, in
    bits, comparable with the unigram entropy of the tokens). The GPT is built in `setup` from the
    shards' vocabulary, so a recipe names only the architecture. At the end of fit, `export_dir`
    receives `GPT.save_pretrained` plus `sequence.json` (layout + tokenizer), what `vtok ar sample` reads.

    Args:
        pattern: Q > 1 codebooks: "delay" (parallel streams, MusicGen) or "flatten".
        block_size: Longest sequence (positions); long audio is cropped to random windows.
        n_layer, n_head, n_embd, dropout: GPT size.
        class_conditional: Condition on the shards' labels (label dropout `class_dropout` for CFG).
        lr, betas, weight_decay, warmup_steps, lr_floor: AdamW with linear warmup and cosine decay.
        seed: Seeds the per-batch layout draws (crops, kept lengths), so a resumed run matches.
        export_dir: Where the final GPT is saved.
    """

    def __init__(self, pattern: str = "delay", block_size: int = 256, n_layer: int = 4, n_head: int = 4,
                 n_embd: int = 128, dropout: float = 0.0, class_conditional: bool = False, class_dropout: float = 0.1,
                 lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.95), weight_decay: float = 0.1,
                 warmup_steps: int = 50, lr_floor: float = 0.1, seed: int = 0, export_dir: str | None = None):
        super().__init__()
        self.save_hyperparameters()
        self.gpt: GPT | None = None
        self.format: SequenceFormat | None = None
        self.meta: dict[str, Any] = {}
        self._resume_rng: torch.Tensor | None = None

    # --- built from the data ------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if self.gpt is not None:
            return
        hp = self.hparams
        self.meta = self.trainer.datamodule.meta
        self.format = SequenceFormat.from_meta(self.meta, hp.pattern, hp.block_size)
        classes = len(self.meta.get("labels", {}).get("names") or []) if hp.class_conditional else 0
        if hp.class_conditional and classes == 0:
            raise ValueError("class_conditional: the shards have no labels (export with --labels from-folders)")
        self.gpt = GPT(vocab_size=self.format.stream_vocab, num_streams=self.format.num_streams,
                       block_size=hp.block_size + (1 if classes else 0), n_layer=hp.n_layer, n_head=hp.n_head,
                       n_embd=hp.n_embd, dropout=hp.dropout, num_classes=classes, class_dropout=hp.class_dropout,
                       tokenizer=self.meta["tokenizer"], tokenizer_hash=self.meta["tokenizer_hash"])

    def batch(self, items: list, step: int) -> dict[str, torch.Tensor]:
        """Lay out a list of (codes, label) items as padded (input, target, label) tensors on this device."""
        rng = random.Random(self.hparams.seed * 1_000_003 + step)
        pairs = [(*self.format.training_pair(codes, rng), label) for codes, label in items]
        return {k: v.to(self.device) for k, v in self.format.collate(pairs).items()}

    def cross_entropy(self, b: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mean loss in nats over non-ignored targets, summed nats over code targets, number of code targets)."""
        labels = b["label"].clamp_min(0) if self.gpt.config["num_classes"] else None
        logits, _ = self.gpt(b["input"], labels=labels)
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), b["target"].reshape(-1),
                              ignore_index=IGNORE, reduction="none")
        target = b["target"].reshape(-1)
        keep = target != IGNORE
        code = keep & (target < self.format.code_vocab)
        return nll[keep].mean(), nll[code].sum(), code.sum()

    # --- steps --------------------------------------------------------------------------------
    def training_step(self, items: list, batch_idx: int) -> torch.Tensor:
        loss, _, _ = self.cross_entropy(self.batch(items, self.global_step))
        self.log("train/loss", loss, prog_bar=True, on_step=True)
        return loss

    def validation_step(self, items: list, batch_idx: int) -> None:
        _, nats, count = self.cross_entropy(self.batch(items, -1 - batch_idx))
        self.log("val/bits_per_token", nats / max(int(count), 1) / math.log(2), prog_bar=True, on_epoch=True,
                 sync_dist=True, batch_size=max(int(count), 1))

    def configure_optimizers(self):
        hp = self.hparams
        decay = [p for p in self.gpt.parameters() if p.ndim >= 2]
        no_decay = [p for p in self.gpt.parameters() if p.ndim < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                                lr=hp.lr, betas=hp.betas)
        total = self.trainer.max_steps if self.trainer.max_steps > 0 else self.trainer.estimated_stepping_batches
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, hp.warmup_steps, total, hp.lr_floor))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # --- exact resume (data position and label-dropout RNG) -----------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["vtok"] = {"torch_rng": torch.get_rng_state()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._resume_rng = checkpoint.get("vtok", {}).get("torch_rng")

    def on_train_start(self) -> None:
        if self._resume_rng is None:
            return
        torch.set_rng_state(self._resume_rng)
        self._resume_rng = None
        per_epoch = len(self.trainer.train_dataloader)
        self.trainer.datamodule.resume_at(self.global_step // per_epoch, self.global_step % per_epoch)

    # --- export -------------------------------------------------------------------------------
    def on_fit_end(self) -> None:
        if self.hparams.export_dir and self.trainer.is_global_zero:
            export(self.gpt, self.format, self.meta, Path(self.hparams.export_dir))


def export(gpt: GPT, fmt: SequenceFormat, meta: dict[str, Any], out: Path) -> None:
    """Save the GPT with `sequence.json`: its sequence layout and the tokenizer (source, hash, rates, labels)."""
    gpt.save_pretrained(out)
    keep = ("tokenizer", "tokenizer_hash", "modality", "vocab_size", "codebooks", "tokens_per_item",
            "tokens_per_second", "sample_rate", "image_size", "labels")
    record = {"format": fmt.config, **{k: meta.get(k) for k in keep}}
    (out / "sequence.json").write_text(json.dumps(record, indent=2))

"""Lightning's predict loop for `vtok export`: each rank encodes its shards (see `vtok.ar.export`)."""
from __future__ import annotations

import warnings
from typing import Any, Callable

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..tokenizer import Tokenizer


class TokenExportModule(L.LightningModule):
    """predict_step: a batch (x, item indices) -> ids (B,K) or (B,Q,T'); the writer stores them per shard."""

    def __init__(self, tokenizer: Tokenizer, encode_kwargs: dict[str, Any], writer: Any):
        super().__init__()
        self.tokenizer = tokenizer
        self.encode_kwargs = encode_kwargs
        self.writer = writer
        # a rank whose shards are all done (a resumed export) has nothing to predict
        self.allow_zero_length_dataloader_with_multiple_devices = True

    def predict_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, _ = batch
        return self.tokenizer.encode(x, **self.encode_kwargs)

    def on_predict_batch_end(self, outputs: torch.Tensor, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self.writer.add(batch[1], outputs)


def predict_shards(tokenizer: Tokenizer, encode_kwargs: dict[str, Any], items: Dataset, sampler: Sampler,
                   collate: Callable, writer: Any, accelerator: str = "auto", devices: int | str = "auto",
                   num_nodes: int = 1, progress: bool = True, num_workers: int = 0) -> int:
    """Encode this rank's batches (the sampler picks them by rank) with Trainer.predict; returns the global rank."""
    module = TokenExportModule(tokenizer, encode_kwargs, writer)
    # the batch sampler shards by rank itself (whole shards per rank), so Lightning must not wrap it
    loader = DataLoader(items, batch_sampler=sampler, collate_fn=collate, num_workers=num_workers)
    trainer = L.Trainer(accelerator=accelerator, devices=devices, num_nodes=num_nodes, logger=False,
                        enable_progress_bar=progress, enable_checkpointing=False, enable_model_summary=False,
                        use_distributed_sampler=False)
    with warnings.catch_warnings():  # the batch sampler covers every pending item; Lightning cannot know that
        warnings.filterwarnings("ignore", message=".*custom batch sampler.*")
        trainer.predict(module, dataloaders=loader, return_predictions=False)
    trainer.strategy.barrier("vtok-export")  # every rank's shards are on disk before rank 0 writes meta.json
    return trainer.global_rank

"""Token shards (written by `vtok export`) as training / validation data for the AR GPT."""
from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from .data import ResumableSampler


class _Keyed(Dataset):
    """Items of `data` at `indices`, addressed by ResumableSampler keys (position, flip) or plain positions."""

    def __init__(self, data, indices: list[int]):
        self.data, self.indices = data, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key):
        position = key[0] if isinstance(key, tuple) else key
        return self.data[self.indices[position]]


class TokenDataModule(L.LightningDataModule):
    """(codes, label) items of a shard set, split into train/val by a seeded fraction; batches are lists
    (the LightningModule lays them out as sequences). Set `use_distributed_sampler: false`: the sampler
    shards by rank itself so a resumed run continues exactly where it stopped.

    Args:
        shards: Directory written by `vtok export` (meta.json + shard_*.bin/.idx.npy).
        batch_size: Items per batch and rank.
        val_fraction: Share of items held out for validation (at least one item).
        seed: Seed of the split and of the training order.
        num_workers: DataLoader workers.
        tokenizer: If given, refuse shards written by another tokenizer (hash check).
    """

    def __init__(self, shards: str, batch_size: int = 32, val_fraction: float = 0.05, seed: int = 0,
                 num_workers: int = 0, tokenizer: str | None = None):
        super().__init__()
        self.save_hyperparameters()
        self.sampler: ResumableSampler | None = None
        self.data = None

    def setup(self, stage: str) -> None:
        from ..ar.shards import load_shards

        hp = self.hparams
        if self.data is None:
            tok = None
            if hp.tokenizer:
                from ..hub import load

                tok = load(hp.tokenizer)
            self.data = load_shards(hp.shards, tok)
        train, val = self.data.split(hp.val_fraction, hp.seed)
        self.train_set, self.val_set = _Keyed(self.data, train), _Keyed(self.data, val)

    @property
    def meta(self) -> dict:
        """meta.json of the shard set (available after setup)."""
        return self.data.meta

    def train_dataloader(self) -> DataLoader:
        hp = self.hparams
        self.sampler = ResumableSampler(len(self.train_set), hp.seed, shuffle=True, flip=False)
        if len(self.sampler) < hp.batch_size:
            raise ValueError(f"{hp.shards}: {len(self.sampler)} training item(s) per rank, fewer than batch_size {hp.batch_size}")
        # a generator of its own: starting an epoch's iterator then draws nothing from the global RNG, which
        # dropout uses and checkpoints restore, so a run resumed at an epoch boundary stays exact
        return DataLoader(self.train_set, batch_size=hp.batch_size, sampler=self.sampler, collate_fn=list,
                          num_workers=hp.num_workers, drop_last=True, persistent_workers=hp.num_workers > 0,
                          generator=torch.Generator().manual_seed(hp.seed))

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.hparams.batch_size, collate_fn=list,
                          num_workers=self.hparams.num_workers, generator=torch.Generator().manual_seed(self.hparams.seed))

    def resume_at(self, epoch: int, batches_done: int) -> None:
        """Continue the training order at `batches_done` batches into `epoch` (called on resume)."""
        if self.sampler is None:
            raise RuntimeError("resume_at called before train_dataloader")
        self.sampler.set_epoch(epoch)
        self.sampler.skip = batches_done * self.hparams.batch_size

"""Image data for tokenizer training: a folder of images, a resumable seeded order, DDP sharding."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Iterator

import lightning as L
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler

from ..assets import load_image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}


def files_below(root: str | Path, suffixes: set[str], kind: str) -> list[Path]:
    """Every file below `root` with one of `suffixes`, recursively, sorted; ValueError when there is none."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{kind} folder {root} does not exist")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in suffixes)
    if not files:
        raise ValueError(f"no {kind} ({', '.join(sorted(suffixes))}) found below {root}")
    return files


def image_files(root: str | Path) -> list[Path]:
    """Every image below `root`, recursively, sorted; ValueError when there is none."""
    return files_below(root, IMAGE_SUFFIXES, "image")


class ImageFolder(Dataset):
    """Images below a folder, centre-cropped and resized to `size`; key (index, flip) -> (3,S,S) in [0,1]."""

    def __init__(self, root: str | Path, size: int):
        self.files = image_files(root)
        self.size = size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: int | tuple[int, bool]) -> torch.Tensor:
        index, flip = key if isinstance(key, tuple) else (key, False)
        x = load_image(self.files[index], size=self.size)
        return x.flip(-1) if flip else x


class ResumableSampler(Sampler):
    """This rank's share of a seeded permutation per epoch, with a per-sample flip drawn from the
    same seed; `skip` batches already consumed (set on resume). Draws nothing from global RNGs."""

    def __init__(self, n: int, seed: int, shuffle: bool, flip: bool):
        self.n, self.seed, self.shuffle, self.flip = n, seed, shuffle, flip
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _rank(self) -> tuple[int, int]:
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1

    def __len__(self) -> int:
        rank, world = self._rank()
        return len(range(rank, self.n, world))

    def __iter__(self) -> Iterator[tuple[int, bool]]:
        rng = random.Random(self.seed * 100_003 + self.epoch)
        order = list(range(self.n))
        if self.shuffle:
            rng.shuffle(order)
        flips = [self.flip and rng.random() < 0.5 for _ in order]
        rank, world = self._rank()
        keys = [(i, flips[i]) for i in order][rank::world]
        skip, self.skip = self.skip, 0
        return iter(keys[skip:])


class ImageDataModule(L.LightningDataModule):
    """Train/val image folders for tokenizer training (set `use_distributed_sampler: false`: the
    sampler shards by rank itself so that a resumed run continues exactly where it stopped)."""

    def __init__(
        self,
        train_dir: str,
        val_dir: str,
        image_size: int,
        batch_size: int = 16,
        val_batch_size: int | None = None,
        num_workers: int = 0,
        flip: bool = True,
        seed: int = 0,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.sampler: ResumableSampler | None = None

    def setup(self, stage: str) -> None:
        hp = self.hparams
        self.train_set = ImageFolder(hp.train_dir, hp.image_size)
        self.val_set = ImageFolder(hp.val_dir, hp.image_size)

    def train_dataloader(self) -> DataLoader:
        hp = self.hparams
        self.sampler = ResumableSampler(len(self.train_set), hp.seed, shuffle=True, flip=hp.flip)
        return DataLoader(
            self.train_set, batch_size=hp.batch_size, sampler=self.sampler, num_workers=hp.num_workers,
            drop_last=True, persistent_workers=hp.num_workers > 0, generator=torch.Generator().manual_seed(hp.seed),
        )

    def val_dataloader(self) -> DataLoader:
        hp = self.hparams
        return DataLoader(self.val_set, batch_size=hp.val_batch_size or hp.batch_size, num_workers=hp.num_workers)

    def resume_at(self, epoch: int, batches_done: int) -> None:
        """Continue the training order at `batches_done` batches into `epoch` (called on resume)."""
        if self.sampler is None:
            raise RuntimeError("resume_at called before train_dataloader")
        self.sampler.set_epoch(epoch)
        self.sampler.skip = batches_done * self.hparams.batch_size

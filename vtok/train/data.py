"""Image data for tokenizer training: an image folder, a Hugging Face dataset or webdataset shards,
in a resumable seeded order, sharded by rank."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Iterator

import lightning as L
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from ..assets import IMAGE_SUFFIXES, load_image
from .image_sources import (DeferredLoader, HFImages, HFStreamImages, ImageStream, StreamLoader, WebDatasetImages,
                            count_tar_samples, image_column, is_local, load_hf, wds_shards, world)



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
    """Training/validation images for tokenizer training from exactly one source: an image folder
    (`train_dir`), a Hugging Face `datasets` dataset (`hf_dataset`) or webdataset tar shards (`wds_urls`).
    Set `use_distributed_sampler: false`: every source shards by rank itself, so that a resumed run
    continues exactly where it stopped (`resume_at`). Streams (`streaming` or `wds_urls`) give a batch
    order that depends on `num_workers` and the number of ranks as well as on `seed`.

    Args:
        train_dir: Folder source: training images below it (recursive; jpg, jpeg, png, webp, bmp).
        val_dir: Folder source: validation images below it (required with train_dir).
        image_size: Side of the square crops: centre-cropped, then resized.
        batch_size: Training batch size per rank.
        val_batch_size: Validation batch size (default: batch_size).
        num_workers: DataLoader worker processes (streaming hf_dataset: at most its shards per rank).
        flip: Flip training images left-right with probability 0.5 (seeded).
        seed: Seed of the order, the flips and the shard order of every epoch.
        hf_dataset: Hugging Face source: a Hub dataset name ("ILSVRC/imagenet-1k"), a folder written
            by save_to_disk, or a local data folder (an image folder, parquet files).
        hf_split: Training split of hf_dataset.
        hf_val_split: Validation split of hf_dataset ("validation"); None: no validation.
        hf_image_key: Column of hf_dataset that holds the images.
        streaming: Read hf_dataset as a stream (an IterableDataset: no full download, seeded shuffle buffer).
        wds_urls: Webdataset source: training tar shards, local paths or URLs, brace-expanded
            ("imagenet1k-train-{0000..1023}.tar"; '::' joins several patterns); each sample's
            image is its jpg, jpeg, png or webp member.
        wds_val_urls: Validation tar shards (read in order); None: no validation.
        samples_per_epoch: Streams: samples per epoch over all ranks (each rank reads
            samples_per_epoch // world_size). Default: the split size in the dataset info (Hub) or the
            count of samples in local tar shards (read once at setup).
        shuffle_buffer: Streams: size of the shuffle buffer per worker.
        val_samples: Use only the first val_samples validation images (and the length of a validation stream).
    """

    def __init__(
        self,
        train_dir: str | None = None,
        val_dir: str | None = None,
        image_size: int = 256,
        batch_size: int = 16,
        val_batch_size: int | None = None,
        num_workers: int = 0,
        flip: bool = True,
        seed: int = 0,
        hf_dataset: str | None = None,
        hf_split: str = "train",
        hf_val_split: str | None = None,
        hf_image_key: str = "image",
        streaming: bool = False,
        wds_urls: str | None = None,
        wds_val_urls: str | None = None,
        samples_per_epoch: int | None = None,
        shuffle_buffer: int = 1000,
        val_samples: int | None = None,
    ):
        super().__init__()
        check_source(train_dir, val_dir, hf_dataset, streaming, wds_urls, wds_val_urls)
        for name, value in (("image_size", image_size), ("batch_size", batch_size), ("shuffle_buffer", shuffle_buffer),
                            ("samples_per_epoch", samples_per_epoch), ("val_samples", val_samples)):
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.save_hyperparameters()
        self.sampler: ResumableSampler | None = None
        self.train_set: Dataset | ImageStream | None = None
        self.val_set: Dataset | ImageStream | None = None

    def setup(self, stage: str) -> None:
        hp = self.hparams
        if hp.train_dir is not None:
            self.train_set = ImageFolder(hp.train_dir, hp.image_size)
            self.val_set = ImageFolder(hp.val_dir, hp.image_size)
        elif hp.wds_urls is not None:
            self.train_set = self._wds(hp.wds_urls, train=True)
            self.val_set = self._wds(hp.wds_val_urls, train=False) if hp.wds_val_urls else None
        else:
            self.train_set = self._hf(hp.hf_split, train=True)
            self.val_set = self._hf(hp.hf_val_split, train=False) if hp.hf_val_split else None
        if hp.val_samples is not None and self.val_set is not None and not isinstance(self.val_set, ImageStream):
            self.val_set = Subset(self.val_set, range(min(hp.val_samples, len(self.val_set))))

    def _stream_args(self, train: bool, length: int | None) -> dict:
        """Keyword arguments shared by the stream sources."""
        hp = self.hparams
        if train and length is None:
            raise ValueError("samples_per_epoch is needed for this stream: its size is not known in advance")
        return dict(size=hp.image_size, batch_size=hp.batch_size, seed=hp.seed, flip=hp.flip and train, train=train,
                    length=length, shuffle_buffer=hp.shuffle_buffer)

    def _wds(self, urls: str, train: bool) -> WebDatasetImages:
        """A webdataset stream over the shards of `urls`."""
        hp = self.hparams
        shards = wds_shards(urls)
        length = hp.samples_per_epoch if train else hp.val_samples
        if train and length is None and all(is_local(s) for s in shards):
            length = count_tar_samples(shards)
        return WebDatasetImages(shards, **self._stream_args(train, length))

    def _hf(self, split: str, train: bool) -> Dataset | ImageStream:
        """The image column of `split` of `hf_dataset`: map-style, or a stream when `streaming`."""
        hp = self.hparams
        ds = image_column(load_hf(hp.hf_dataset, split, hp.streaming), hp.hf_image_key, hp.hf_dataset)
        if not hp.streaming:
            return HFImages(ds, hp.hf_image_key, hp.image_size)
        length = hp.samples_per_epoch if train else hp.val_samples
        if length is None:
            splits = getattr(ds.info, "splits", None) or {}
            length = splits[split].num_examples if split in splits and splits[split].num_examples else None
        return HFStreamImages(ds, hp.hf_image_key, **self._stream_args(train, length))

    def _workers(self) -> int:
        """DataLoader workers for the training set: no more than a streaming dataset's shards per rank."""
        hp = self.hparams
        if isinstance(self.train_set, HFStreamImages) and hp.num_workers > 1:
            from datasets.distributed import split_dataset_by_node

            rank, size = world()
            return min(hp.num_workers, split_dataset_by_node(self.train_set.ds, rank, size).n_shards)
        return hp.num_workers

    def train_dataloader(self) -> DataLoader:
        hp = self.hparams
        if isinstance(self.train_set, ImageStream):
            self.sampler = None
            rank, size = world()
            if self.train_set.length // size < hp.batch_size:
                raise ValueError(f"{self.train_set.length} samples per epoch over {size} ranks give less than "
                                 f"one batch of {hp.batch_size} per rank (samples_per_epoch)")
            return StreamLoader(self.train_set, batch_size=hp.batch_size, num_workers=self._workers(), drop_last=True)
        self.sampler = ResumableSampler(len(self.train_set), hp.seed, shuffle=True, flip=hp.flip)
        return DeferredLoader(
            self.train_set, batch_size=hp.batch_size, sampler=self.sampler, num_workers=hp.num_workers,
            drop_last=True, persistent_workers=hp.num_workers > 0, generator=torch.Generator().manual_seed(hp.seed),
        )

    def val_dataloader(self) -> DataLoader | list:
        hp = self.hparams
        if self.val_set is None:
            return []
        loader = StreamLoader if isinstance(self.val_set, ImageStream) else DataLoader
        return loader(self.val_set, batch_size=hp.val_batch_size or hp.batch_size, num_workers=hp.num_workers)

    def resume_at(self, epoch: int, batches_done: int) -> None:
        """Continue the training order at `batches_done` batches into `epoch` (called on resume)."""
        if isinstance(self.train_set, ImageStream):
            self.train_set.epoch, self.train_set.skip = epoch, batches_done
            return
        if self.sampler is None:
            raise RuntimeError("resume_at called before train_dataloader")
        self.sampler.set_epoch(epoch)
        self.sampler.skip = batches_done * self.hparams.batch_size


SOURCES = ("train_dir (+ val_dir), hf_dataset (+ hf_split, hf_val_split, hf_image_key, streaming) "
           "or wds_urls (+ wds_val_urls)")


def check_source(train_dir: str | None, val_dir: str | None, hf_dataset: str | None, streaming: bool,
                 wds_urls: str | None, wds_val_urls: str | None) -> None:
    """ValueError unless exactly one image source is configured, with only its own options."""
    given = [name for name, value in (("train_dir", train_dir), ("hf_dataset", hf_dataset), ("wds_urls", wds_urls))
             if value is not None]
    if len(given) != 1:
        raise ValueError(f"ImageDataModule needs exactly one image source: {SOURCES}; got "
                         f"{', '.join(given) if given else 'none'}")
    if train_dir is not None and val_dir is None:
        raise ValueError("train_dir needs a val_dir")
    if val_dir is not None and train_dir is None:
        raise ValueError(f"val_dir goes with train_dir, not with {given[0]}")
    if streaming and hf_dataset is None:
        raise ValueError(f"streaming applies to hf_dataset, not to {given[0]}")
    if wds_val_urls is not None and wds_urls is None:
        raise ValueError(f"wds_val_urls goes with wds_urls, not with {given[0]}")

"""Audio data for codec training: folders of wav/flac/ogg, seeded random segments, resumable DDP order."""
from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Iterator

import lightning as L
import soundfile as sf
import torch
import torch.nn.functional as F
import torchaudio.functional as AF
from torch.utils.data import DataLoader, Dataset

from ..assets import AUDIO_SUFFIXES
from .data import ResumableSampler, files_below



def audio_files(root: str | Path) -> list[Path]:
    """Every wav/flac/ogg file below `root`, recursively, sorted; ValueError when there is none."""
    return files_below(root, AUDIO_SUFFIXES, "audio")


def read_audio(path: Path, sample_rate: int, start: int = 0, frames: int = -1) -> torch.Tensor:
    """`frames` source samples from `start` of a file, mono, resampled -> (1, T) in [-1,1] (scaled down, never clipped)."""
    data, rate = sf.read(str(path), start=start, frames=frames, dtype="float32", always_2d=True)
    wav = torch.from_numpy(data.mean(axis=1))[None]
    if rate != sample_rate:
        wav = AF.resample(wav, rate, sample_rate)
    peak = wav.abs().max() if wav.numel() else wav.new_zeros(())
    return wav / peak if peak > 1 else wav


def fit_length(wav: torch.Tensor, length: int) -> torch.Tensor:
    """Crop (1, T) to its first `length` samples or zero-pad it at the end to `length`."""
    return F.pad(wav[..., :length], (0, max(0, length - wav.shape[-1])))


class AudioSegments(Dataset):
    """Random fixed-length segments of the files below `root`; key (index, seed, epoch) -> (1, L) in [-1,1].

    The segment's start is drawn from (seed, epoch, index) alone, so any process, worker or resumed
    run reads the same samples for the same key. Files shorter than a segment are zero-padded.
    """

    def __init__(self, root: str | Path, sample_rate: int, seconds: float):
        self.files = audio_files(root)
        self.sample_rate = sample_rate
        self.length = round(seconds * sample_rate)
        if self.length < 1:
            raise ValueError(f"segment_seconds must give at least one sample at {sample_rate} Hz, got {seconds}")
        self.infos = [sf.info(str(p)) for p in self.files]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: tuple[int, int, int]) -> torch.Tensor:
        index, seed, epoch = key
        info = self.infos[index]
        frames = math.ceil(self.length * info.samplerate / self.sample_rate)
        start = random.Random(f"{seed}:{epoch}:{index}").randint(0, max(0, info.frames - frames))
        return fit_length(read_audio(self.files[index], self.sample_rate, start, frames), self.length)


class AudioClips(Dataset):
    """The files below `root` for validation: whole clips, or centre-cropped / zero-padded to `seconds`; (1, T) in [-1,1]."""

    def __init__(self, root: str | Path, sample_rate: int, seconds: float | None = None):
        self.files = audio_files(root)
        self.sample_rate = sample_rate
        self.length = None if seconds is None else round(seconds * sample_rate)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        wav = read_audio(self.files[index], self.sample_rate)
        if self.length is None:
            return wav
        start = max(0, (wav.shape[-1] - self.length) // 2)
        return fit_length(wav[..., start:], self.length)


class SegmentSampler(ResumableSampler):
    """`ResumableSampler`'s seeded, rank-sharded, skippable order, as keys (index, seed, epoch) for `AudioSegments`."""

    def __init__(self, n: int, seed: int):
        super().__init__(n, seed, shuffle=True, flip=False)

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        keys, epoch = super().__iter__(), self.epoch
        return ((index, self.seed, epoch) for index, _ in keys)


class AudioDataModule(L.LightningDataModule):
    """Train/val audio folders for codec training, resampled to `sample_rate` (set `use_distributed_sampler:
    false`: the sampler shards by rank itself so that a resumed run continues exactly where it stopped).

    Training batches are (B,1,segment) random segments; validation takes whole clips one at a time, or
    centre crops of `val_seconds` in batches of `val_batch_size` (default `batch_size`).
    """

    def __init__(
        self,
        train_dir: str,
        val_dir: str,
        sample_rate: int,
        segment_seconds: float,
        batch_size: int = 16,
        num_workers: int = 0,
        seed: int = 0,
        val_seconds: float | None = None,
        val_batch_size: int | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.sampler: SegmentSampler | None = None

    def setup(self, stage: str) -> None:
        hp = self.hparams
        self.train_set = AudioSegments(hp.train_dir, hp.sample_rate, hp.segment_seconds)
        self.val_set = AudioClips(hp.val_dir, hp.sample_rate, hp.val_seconds)

    def train_dataloader(self) -> DataLoader:
        hp = self.hparams
        self.sampler = SegmentSampler(len(self.train_set), hp.seed)
        if len(self.sampler) < hp.batch_size:
            raise ValueError(f"{hp.train_dir}: {len(self.sampler)} file(s) per rank, fewer than batch_size {hp.batch_size}")
        # a generator of its own: starting an epoch's iterator then draws nothing from the global RNG, which
        # quantizer dropout uses, so a run resumed at an epoch boundary continues the same random stream
        return DataLoader(self.train_set, batch_size=hp.batch_size, sampler=self.sampler, num_workers=hp.num_workers,
                          drop_last=True, persistent_workers=hp.num_workers > 0,
                          generator=torch.Generator().manual_seed(hp.seed))

    def val_dataloader(self) -> DataLoader:
        hp = self.hparams
        batch_size = 1 if hp.val_seconds is None else hp.val_batch_size or hp.batch_size
        return DataLoader(self.val_set, batch_size=batch_size, num_workers=hp.num_workers)

    def resume_at(self, epoch: int, batches_done: int) -> None:
        """Continue the training order at `batches_done` batches into `epoch` (called on resume)."""
        if self.sampler is None:
            raise RuntimeError("resume_at called before train_dataloader")
        self.sampler.set_epoch(epoch)
        self.sampler.skip = batches_done * self.hparams.batch_size

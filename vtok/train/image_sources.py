"""Image sources beyond a folder: Hugging Face `datasets` (map-style or streaming) and webdataset tar
shards, with seeded orders, rank/worker sharding and exact resume by skipping consumed samples."""
from __future__ import annotations

import io
import itertools
import os
import random
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from ..assets import load_image

WDS_IMAGE_KEYS = ("jpg", "jpeg", "png", "webp")
EXTRA_HINT = "install the data extra: pip install 'vtok[data]'"


def world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) outside torch.distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_local(shard: str) -> bool:
    """True for a shard that is a local path (no URL scheme, no pipe)."""
    return "://" not in shard and not shard.startswith(("pipe:", "file:"))


def image_tensor(value: Any, size: int, flip: bool = False) -> torch.Tensor:
    """Encoded image (bytes, {"bytes","path"} record, path or PIL image) -> (3,S,S) float in [0,1]."""
    if isinstance(value, dict):
        value = value.get("bytes") or value.get("path")
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = io.BytesIO(bytes(value))
    elif hasattr(value, "save") and not isinstance(value, (str, Path)):  # a PIL image
        buffer = io.BytesIO()
        value.save(buffer, format="PNG")
        value = io.BytesIO(buffer.getvalue())
    elif value is None:
        raise ValueError("image record has neither bytes nor a path")
    x = load_image(value, size=size)
    return x.flip(-1) if flip else x


def buffer_shuffle(items: Iterable[Any], size: int, rng: random.Random) -> Iterator[Any]:
    """Shuffle a stream through a buffer of `size` items drawn with `rng`."""
    buffer: list[Any] = []
    for item in items:
        if len(buffer) < size:
            buffer.append(item)
            continue
        j = rng.randrange(size)
        buffer[j], item = item, buffer[j]
        yield item
    rng.shuffle(buffer)
    yield from buffer


def assign(shards: list[str], index: int, count: int) -> tuple[list[str], int, int]:
    """Consumer `index` of `count`: its shards if there are enough, else all shards and keep every
    `count`-th sample from offset `index`; returns (shards, sample stride, sample offset)."""
    if count <= 1:
        return shards, 1, 0
    if len(shards) >= count:
        return shards[index::count], 1, 0
    return shards, count, index


def every(items: Iterable[Any], stride: int, offset: int) -> Iterator[Any]:
    """Every `stride`-th item from `offset`."""
    return itertools.islice(items, offset, None, stride) if stride > 1 else iter(items)


# --- Hugging Face datasets ----------------------------------------------------------------------
def _datasets():
    """The `datasets` module, or an ImportError naming the extra."""
    try:
        import datasets
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError(f"hf_dataset needs the `datasets` package: {EXTRA_HINT}") from err
    return datasets


def _offline_error(err: Exception) -> bool:
    """True when `err` says the Hub could not be reached (offline mode, no network, timeout)."""
    names = " ".join(c.__name__ for c in type(err).__mro__)
    return (isinstance(err, (ConnectionError, TimeoutError)) or "Offline" in names or "Connect" in names
            or "Timeout" in names or "OfflineModeIsEnabled" in str(err) or "Couldn't reach" in str(err))


def load_hf(name: str, split: str, streaming: bool) -> Any:
    """A split of a Hub dataset, a save_to_disk folder or a local data folder (e.g. an image folder)."""
    datasets = _datasets()
    path = Path(name).expanduser()
    if path.exists():
        if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
            ds = datasets.load_from_disk(str(path))
            if isinstance(ds, datasets.DatasetDict):
                if split not in ds:
                    raise ValueError(f"hf_dataset {name} has splits {sorted(ds)}, not {split!r}")
                ds = ds[split]
            return ds.to_iterable_dataset(num_shards=max(1, min(len(ds), 256))) if streaming else ds
        return datasets.load_dataset(str(path), split=split, streaming=streaming)
    try:
        return datasets.load_dataset(name, split=split, streaming=streaming)
    except Exception as err:
        if not _offline_error(err):
            raise
        offline = " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0") else ""
        raise ConnectionError(
            f"hf_dataset {name!r} (split {split!r}) is not in the local Hugging Face cache and the Hub cannot be "
            f"reached{offline}. Fetch it once with network access: `hf download --repo-type dataset {name}` "
            f"(or python -c \"import datasets; datasets.load_dataset('{name}', split='{split}')\"), "
            f"or pass a local folder saved with save_to_disk or an image folder as hf_dataset.") from None


def image_column(ds: Any, key: str, name: str) -> Any:
    """`ds` reduced to its image column `key`, left encoded (decoded here, after skipping)."""
    features = getattr(ds, "features", None)
    if features is not None:
        if key not in features:
            raise ValueError(f"hf_dataset {name} has no column {key!r} (hf_image_key); columns: {sorted(features)}")
        ds = ds.select_columns([key])
        if type(features[key]).__name__ == "Image":
            ds = ds.cast_column(key, _datasets().Image(decode=False))
    return ds


class HFImages(Dataset):
    """A map-style `datasets.Dataset` image column; key (index, flip) -> (3,S,S) in [0,1]."""

    def __init__(self, ds: Any, key: str, size: int):
        self.ds, self.key, self.size = ds, key, size

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, key: int | tuple[int, bool]) -> torch.Tensor:
        index, flip = key if isinstance(key, tuple) else (key, False)
        return image_tensor(self.ds[int(index)][self.key], self.size, flip)


# --- streams ------------------------------------------------------------------------------------
class ImageStream(IterableDataset):
    """Images decoded from a stream of encoded records. Training: a seeded order per epoch, this rank's
    share, exactly `len(self)` samples per rank (a short share repeats its own data in a new order),
    a seeded flip per sample, and `skip` batches consumed before a resume. Validation: fixed order."""

    def __init__(self, size: int, batch_size: int, seed: int, flip: bool, train: bool, length: int | None,
                 shuffle_buffer: int):
        self.size, self.batch_size, self.seed, self.flip, self.train = size, batch_size, seed, flip, train
        self.length, self.shuffle_buffer = length, shuffle_buffer
        self.epoch, self.skip, self.rank, self.world = 0, 0, 0, 1  # set in the main process per epoch

    def records(self, epoch: int, cycle: int, worker: int, workers: int) -> Iterator[Any]:
        """Encoded images of this rank and worker for `epoch` (pass `cycle` when repeating)."""
        raise NotImplementedError

    def rank_batches(self) -> int:
        """Training batches per rank and epoch."""
        return self.length // self.world // self.batch_size

    def __len__(self) -> int:
        if self.length is None:
            raise TypeError("the length of this stream is unknown")
        return self.rank_batches() * self.batch_size if self.train else self.length

    def __iter__(self) -> Iterator[torch.Tensor]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        if self.train:
            return self._train(self.epoch, self.skip, worker, workers)
        return self._val(worker, workers)

    def _val(self, worker: int, workers: int) -> Iterator[torch.Tensor]:
        """This worker's share of the records in order, up to `length` in all."""
        records = self.records(0, 0, worker, workers)
        if self.length is not None:
            records = itertools.islice(records, len(range(worker, self.length, workers)))
        return (image_tensor(r, self.size) for r in records)

    def _train(self, epoch: int, skip: int, worker: int, workers: int) -> Iterator[torch.Tensor]:
        """This worker's batches (every `workers`-th of the rank's), less the first `skip // workers`."""
        total = len(range(worker, self.rank_batches(), workers)) * self.batch_size
        start = min(total, skip // workers * self.batch_size)
        seen = 0
        for cycle in itertools.count():
            if seen >= total:
                return
            flips = random.Random(f"flip/{self.seed}/{epoch}/{cycle}/{self.rank}/{worker}")
            before = seen
            for record in self.records(epoch, cycle, worker, workers):
                flip = self.flip and flips.random() < 0.5  # drawn for skipped samples too
                if seen >= start:
                    yield image_tensor(record, self.size, flip)
                seen += 1
                if seen >= total:
                    return
            if seen == before:
                raise RuntimeError(f"rank {self.rank} worker {worker} of {workers} got no samples: "
                                   f"use fewer workers or ranks than shards")


class Deferred:
    """An iterator that calls `start` at its first `next`: Lightning calls `iter(loader)` before the
    `on_train_start` hook in which `resume_at` moves the data position, and fetches only after it."""

    def __init__(self, start: Callable[[], Iterator[Any]]):
        self.start, self.iterator = start, None

    def __iter__(self) -> Deferred:
        return self

    def __next__(self) -> Any:
        if self.iterator is None:
            self.iterator = self.start()
        return next(self.iterator)


class DeferredLoader(DataLoader):
    """A DataLoader that starts its pass (sampler order, worker prefetch) at the first batch asked for."""

    def __iter__(self) -> Deferred:
        return Deferred(self.start)

    def start(self) -> Iterator[Any]:
        """The real iterator of this pass."""
        return super().__iter__()


class StreamLoader(DeferredLoader):
    """A DataLoader over an ImageStream that passes it the rank, epoch and resume position as each
    pass starts (workers get a fresh copy per pass) and drops the `skip % workers` batches they cannot."""

    def start(self) -> Iterator[Any]:
        ds: ImageStream = self.dataset
        ds.rank, ds.world = world()
        skip = ds.skip if ds.train else 0
        iterator = super().start()
        if ds.train:
            ds.epoch, ds.skip = ds.epoch + 1, 0
        for _ in range(skip % max(1, self.num_workers)):
            next(iterator)
        return iterator


class WebDatasetImages(ImageStream):
    """Images in webdataset tar shards (local paths or URLs): shard order seeded per epoch, shards
    split by rank then worker (samples, when there are fewer shards than consumers), a shuffle buffer."""

    def __init__(self, urls: list[str], **kw: Any):
        super().__init__(**kw)
        self.urls = urls

    def records(self, epoch: int, cycle: int, worker: int, workers: int) -> Iterator[bytes]:
        shards, stride, offset = list(self.urls), 1, 0
        if self.train:
            random.Random(f"shards/{self.seed}/{epoch}").shuffle(shards)
            shards, stride, offset = assign(shards, self.rank, self.world)
            if cycle:
                random.Random(f"shards/{self.seed}/{epoch}/{cycle}/{self.rank}").shuffle(shards)
        shards, wstride, woffset = assign(shards, worker, workers)
        images = every(every(tar_images(shards), stride, offset), wstride, woffset)
        if not self.train:
            return images
        rng = random.Random(f"buffer/{self.seed}/{epoch}/{cycle}/{self.rank}/{worker}")
        return buffer_shuffle(images, self.shuffle_buffer, rng)


def wds_shards(urls: str) -> list[str]:
    """Brace-expanded shard list ("a-{0000..0099}.tar", several joined by '::')."""
    try:
        from webdataset.shardlists import expand_urls
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError(f"wds_urls needs the `webdataset` package: {EXTRA_HINT}") from err
    shards = expand_urls(urls)
    missing = [s for s in shards if is_local(s) and not Path(s).is_file()]
    if missing:
        raise ValueError(f"wds_urls {urls!r}: {len(missing)} of {len(shards)} shards not found, e.g. {missing[0]}")
    return shards


def tar_images(shards: Iterable[str]) -> Iterator[bytes]:
    """The encoded image of each sample (members grouped by key) in the tar shards, in order."""
    from webdataset.gopen import gopen
    from webdataset.tariterators import group_by_keys, tar_file_expander

    for url in shards:
        with gopen(url) as stream:
            for sample in group_by_keys(tar_file_expander([{"url": url, "stream": stream}])):
                key = next((k for k in WDS_IMAGE_KEYS if k in sample), None)
                if key is None:
                    members = sorted(k for k in sample if not k.startswith("__"))
                    raise ValueError(f"sample {sample['__key__']} in {url} has no image ({', '.join(WDS_IMAGE_KEYS)}); "
                                     f"it has {members}")
                yield sample[key]


def count_tar_samples(shards: list[str]) -> int:
    """Samples with an image in local tar shards (reads the member headers only)."""
    import tarfile

    from webdataset.tariterators import base_plus_ext

    total = 0
    for shard in shards:
        with tarfile.open(shard) as tar:
            names = [base_plus_ext(m.name) for m in tar if m.isreg()]
        total += len({key for key, ext in names if ext and ext.lower() in WDS_IMAGE_KEYS})
    return total


class HFStreamImages(ImageStream):
    """An image column of a streaming `datasets.IterableDataset`: shuffled with a seeded buffer
    (shard order too) per epoch, split by rank with split_dataset_by_node; workers get shards from `datasets`."""

    def __init__(self, ds: Any, key: str, **kw: Any):
        super().__init__(**kw)
        self.ds, self.key = ds, key

    def node_split(self, epoch_code: int) -> Any:
        """This rank's shuffled share (training) or the whole stream in order (validation)."""
        ds = self.ds
        if self.train:
            from datasets.distributed import split_dataset_by_node

            ds = ds.shuffle(seed=self.seed, buffer_size=self.shuffle_buffer)
            ds = split_dataset_by_node(ds, self.rank, self.world)
            ds.set_epoch(epoch_code)
        return ds

    def records(self, epoch: int, cycle: int, worker: int, workers: int) -> Iterator[Any]:
        for row in self.node_split(epoch + cycle * 1_000_003):
            yield row[self.key]

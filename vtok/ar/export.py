"""`vtok export`: encode a folder of images or audio into memory-mappable token shards.

Layout of `out` (format "vtok.tokens/1"):
    meta.json              tokenizer id + hash, vocab, codebooks, dtype, special tokens, label names and
                           "shards": base names ("shard_00000" for shard_00000.bin + shard_00000.idx.npy)
    shard_00000.bin        flat token array (uint16 when vocab <= 65536, else uint32); an item's codes
                           are stored codebook-major, (Q, T') flattened
    shard_00000.idx.npy    int64 (n_items, 3): offset in tokens, length in frames T' (tokens for images), label
    sources.json           the source files, relative to `data`
    items.npy              int64 (num_items, 3): file index, start sample, valid samples (audio; 0 for images)
    progress.json          the settings fingerprint of the export that owns this folder

meta["tokens_per_second"] (audio) counts token frames, each of `codebooks` ids. meta["special_tokens"]
reserves bos = V, eos = V+1, pad = V+2 above the tokenizer's vocab V for the AR model: its per-stream
vocab is V + 3, plus any length-conditioning tokens it appends after these. `limit` keeps the first
items of the plan. Labels ("from-folders") are the indices of the sorted parent-folder names.

Item i of the sorted plan lands in shard i // shard_items, so the layout depends only on the sorted
file list and the settings. A shard is complete when its .idx.npy exists and its .bin has the size the
index implies: .bin is renamed into place before .idx.npy, so a killed export leaves no complete-looking
partial shard, and a rerun encodes only the incomplete ones. Rank r of W encodes shards r, r+W, ...
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ..assets import list_data, load_audio, load_image

FORMAT = "vtok.tokens/1"
META = "meta.json"
PROGRESS = "progress.json"
LABEL_MODES = (None, "none", "from-folders")


def tokenizer_hash(tok: torch.nn.Module) -> str:
    """sha256 hex of a tokenizer's architecture name, JSON config (sorted keys) and state_dict tensors."""
    h = hashlib.sha256()
    h.update(type(tok).__name__.encode())
    h.update(json.dumps(getattr(tok, "config", {}), sort_keys=True).encode())
    state = tok.state_dict()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (vocab <= 65536), else uint32."""
    return np.dtype(np.uint16 if vocab_size <= 65536 else np.uint32)


def shard_name(index: int) -> str:
    return f"shard_{index:05d}"


# --- the plan: which items, in which shard ------------------------------------------------------
@dataclass
class Plan:
    """Every item to encode, in order: source file, window start / length in samples, label."""

    modality: str
    files: list[Path]
    file_index: np.ndarray  # (N,) index into files
    start: np.ndarray  # (N,) first sample of the window (audio)
    samples: np.ndarray  # (N,) samples fed to the encoder, padding included (audio)
    valid: np.ndarray  # (N,) samples of real audio in the window (audio)
    label: np.ndarray  # (N,)
    shard_items: int

    def __len__(self) -> int:
        return len(self.file_index)

    @property
    def num_shards(self) -> int:
        return -(-len(self) // self.shard_items)

    def shard_range(self, shard: int) -> range:
        return range(shard * self.shard_items, min((shard + 1) * self.shard_items, len(self)))


def folder_labels(files: list[Path], root: Path, mode: str | None) -> tuple[np.ndarray, list[str]]:
    """Labels per file: the index of its parent folder (relative to root) among the sorted folder names."""
    if mode in (None, "none"):
        return np.full(len(files), -1, dtype=np.int64), []
    parents = [p.parent.relative_to(root).as_posix() for p in files]
    if "." in parents:
        raise ValueError(f"labels='from-folders': every file must sit in a class folder below {root}, "
                         f"got {files[parents.index('.')]} directly in it")
    names = sorted(set(parents))
    ids = {name: i for i, name in enumerate(names)}
    return np.array([ids[p] for p in parents], dtype=np.int64), names


def resampled_length(path: Path, sample_rate: int) -> int:
    """Samples of a file once resampled to sample_rate (torchaudio's length: ceil(n * new / old))."""
    import soundfile as sf

    info = sf.info(str(path))
    return -(-info.frames * sample_rate // info.samplerate)


def plan_items(modality: str, files: list[Path], labels: np.ndarray, shard_items: int, sample_rate: int = 0,
               window: int | None = None, min_samples: int = 1, limit: int | None = None) -> Plan:
    """Items of images (one per file) or audio (whole files, or windows of `window` samples); the first `limit`."""
    rows: list[tuple[int, ...]] = []  # (file, start, samples, valid, label)
    for f, path in enumerate(files):
        if limit is not None and len(rows) >= limit:
            break
        if modality == "image":
            rows.append((f, 0, 0, 0, labels[f]))
            continue
        n = resampled_length(path, sample_rate)
        if window is None:
            rows.append((f, 0, max(n, min_samples), n, labels[f]))
            continue
        for start in range(0, n, window):
            valid = min(window, n - start)
            if 2 * valid >= window:  # a last partial window shorter than half a window is dropped
                rows.append((f, start, window, valid, labels[f]))
    if not rows:
        raise ValueError(f"no items to export: every audio file is shorter than half a window ({window} samples)")
    cols = np.array(rows[:limit], dtype=np.int64).T
    return Plan(modality, files, cols[0], cols[1], cols[2], cols[3], cols[4], shard_items)


# --- shard files --------------------------------------------------------------------------------
def shard_complete(out: Path, shard: int, itemsize: int, codebooks: int) -> bool:
    """True when the shard's index exists and its .bin holds exactly the tokens the index lists."""
    idx_path, bin_path = out / f"{shard_name(shard)}.idx.npy", out / f"{shard_name(shard)}.bin"
    if not (idx_path.is_file() and bin_path.is_file()):
        return False
    try:
        idx = np.load(idx_path)
    except (ValueError, OSError, EOFError):
        return False
    tokens = int(idx[:, 1].sum()) * codebooks if len(idx) else 0
    return idx.ndim == 2 and idx.shape[1] == 3 and bin_path.stat().st_size == tokens * itemsize


def _replace(tmp: Path, final: Path) -> None:
    """Flush tmp to disk and rename it to final atomically."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)


class ShardWriter:
    """Collects encoded items and writes each shard (.bin, then .idx.npy) once all its items arrived."""

    def __init__(self, out: Path, plan: Plan, dtype: np.dtype, vocab_size: int):
        self.out, self.plan, self.dtype, self.vocab_size = out, plan, dtype, vocab_size
        self.pending: dict[int, dict[int, np.ndarray]] = {}
        self.written: list[int] = []

    def add(self, items: torch.Tensor, ids: torch.Tensor) -> None:
        """Take ids (B,K) or (B,Q,T') of the plan items `items` (B,)."""
        ids = ids.detach().cpu()
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.vocab_size):
            raise ValueError(f"export: ids outside [0, {self.vocab_size}), got [{int(ids.min())}, {int(ids.max())}]")
        for item, codes in zip(items.tolist(), ids.numpy()):
            shard = item // self.plan.shard_items
            self.pending.setdefault(shard, {})[item] = codes
            if len(self.pending[shard]) == len(self.plan.shard_range(shard)):
                self.write(shard, self.pending.pop(shard))

    def write(self, shard: int, codes: dict[int, np.ndarray]) -> None:
        """Write one shard: flat codebook-major tokens + (offset, length, label) rows, atomically."""
        items = sorted(codes)
        lengths = np.array([codes[i].shape[-1] for i in items], dtype=np.int64)
        sizes = np.array([codes[i].size for i in items], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        index = np.stack([offsets, lengths, self.plan.label[items]], axis=1)
        flat = np.concatenate([codes[i].reshape(-1) for i in items]).astype(self.dtype)
        base = self.out / shard_name(shard)
        tmp_bin, tmp_idx = base.with_name(base.name + ".bin.tmp"), base.with_name(base.name + ".idx.npy.tmp")
        with open(tmp_bin, "wb") as f:
            flat.tofile(f)
        _replace(tmp_bin, base.with_name(base.name + ".bin"))
        with open(tmp_idx, "wb") as f:
            np.save(f, index)
        _replace(tmp_idx, base.with_name(base.name + ".idx.npy"))
        self.written.append(shard)


# --- loading items and batching them per shard ----------------------------------------------------
class PlanItems(Dataset):
    """Plan item i -> (image (3,S,S) in [0,1] or audio (1,samples) in [-1,1], i)."""

    def __init__(self, plan: Plan, image_size: int = 0, sample_rate: int = 0):
        self.plan, self.image_size, self.sample_rate = plan, image_size, sample_rate
        self._cached: tuple[int, torch.Tensor] | None = None  # consecutive windows share a file

    def __len__(self) -> int:
        return len(self.plan)

    def _audio(self, f: int) -> torch.Tensor:
        if self._cached is None or self._cached[0] != f:
            self._cached = (f, load_audio(self.plan.files[f], self.sample_rate)[0])
        return self._cached[1]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        p = self.plan
        if p.modality == "image":
            return load_image(p.files[p.file_index[i]], size=self.image_size), i
        wav = self._audio(int(p.file_index[i]))
        start, samples, valid = int(p.start[i]), int(p.samples[i]), int(p.valid[i])
        clip = wav[:, start : start + valid]
        return torch.nn.functional.pad(clip, (0, samples - clip.shape[-1])), i


def rank_world() -> tuple[int, int]:
    """(rank, world size) of the running process group, (0, 1) without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class ShardBatchSampler(Sampler):
    """This rank's incomplete shards (r, r+W, ...) in batches that never span two shards or two lengths."""

    def __init__(self, plan: Plan, out: Path, batch_size: int, itemsize: int, codebooks: int):
        self.plan, self.out, self.batch_size, self.itemsize, self.codebooks = plan, out, batch_size, itemsize, codebooks

    def shards(self) -> list[int]:
        rank, world = rank_world()
        return [s for s in range(rank, self.plan.num_shards, world)
                if not shard_complete(self.out, s, self.itemsize, self.codebooks)]

    def _batches(self) -> list[list[int]]:
        batches = []
        for s in self.shards():
            groups: dict[int, list[int]] = {}
            for i in self.plan.shard_range(s):
                groups.setdefault(int(self.plan.samples[i]), []).append(i)
            for items in groups.values():
                batches += [items[j : j + self.batch_size] for j in range(0, len(items), self.batch_size)]
        return batches

    def __len__(self) -> int:
        return len(self._batches())

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches())


def collate(batch: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.stack([x for x, _ in batch]), torch.tensor([i for _, i in batch], dtype=torch.long)


# --- the export ---------------------------------------------------------------------------------
def _check_positive(name: str, value: Any, kind: type = int, optional: bool = True) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int) or value <= 0:
        allowed = f"a positive {kind.__name__}" + (" or None" if optional else "")
        raise ValueError(f"export: {name} must be {allowed}, got {value!r}")


def _has_shards(out: Path) -> bool:
    return any(out.glob("shard_*.bin")) or any(out.glob("shard_*.idx.npy"))


def _claim(out: Path, fingerprint: dict[str, Any]) -> None:
    """Record the settings in out/progress.json; refuse a folder that holds an export with other settings."""
    digest = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()
    path = out / PROGRESS
    if path.is_file():
        try:
            old = json.loads(path.read_text()).get("fingerprint")
        except (ValueError, AttributeError):
            old = None
        if old == digest:
            return
        if _has_shards(out):
            raise ValueError(f"export: {out} holds an export with other settings (tokenizer, data or options); "
                             "pass a new --out or delete it to start over")
        # an earlier export that wrote no shard (it failed early) leaves nothing to protect
    elif _has_shards(out):
        raise ValueError(f"export: {out} holds shard files but no {PROGRESS}; pass a new --out or delete it")
    tmp = out / f"{PROGRESS}.{os.getpid()}.tmp"
    settings = {k: v for k, v in fingerprint.items() if k != "files"}
    tmp.write_text(json.dumps({"format": FORMAT, "fingerprint": digest, "settings": settings}, indent=2))
    os.replace(tmp, path)


def export_tokens(
    tokenizer: str,
    data: str | Path,
    out: str | Path,
    num_tokens: int | None = None,
    num_codebooks: int | None = None,
    labels: str | None = None,
    audio_seconds: float | None = None,
    shard_items: int = 4096,
    batch_size: int = 32,
    image_size: int | None = None,
    accelerator: str = "auto",
    devices: int | str = "auto",
    num_nodes: int = 1,
    limit: int | None = None,
    progress: bool = True,
) -> dict:
    """Encode every image or audio file below `data` with `tokenizer` into token shards in `out`; returns meta."""
    from ..hub import load

    if labels not in LABEL_MODES:
        raise ValueError(f"export: labels must be None or 'from-folders', got {labels!r}")
    for name, value in (("shard_items", shard_items), ("batch_size", batch_size)):
        _check_positive(name, value, optional=False)
    for name, value in (("num_tokens", num_tokens), ("num_codebooks", num_codebooks), ("image_size", image_size),
                        ("limit", limit)):
        _check_positive(name, value)
    _check_positive("audio_seconds", audio_seconds, float)

    tok = load(tokenizer).eval()
    modality, files = list_data(data)
    root = Path(data) if Path(data).is_dir() else Path(data).parent
    if modality != tok.modality:
        raise ValueError(f"export: {tokenizer} is an {tok.modality} tokenizer, but {data} holds {modality} files")
    label_ids, label_names = folder_labels(files, root, labels)

    if modality == "image":
        plan, items, encode_kwargs, codebooks, size = _image_job(tok, files, label_ids, num_tokens, num_codebooks,
                                                                 audio_seconds, image_size, shard_items, limit)
    else:
        plan, items, encode_kwargs, codebooks, size = _audio_job(tok, files, label_ids, num_tokens, num_codebooks,
                                                                 audio_seconds, image_size, shard_items, limit)

    digest = tokenizer_hash(tok)
    dtype = token_dtype(tok.vocab_size)
    rel_files = [p.relative_to(root).as_posix() for p in files]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _claim(out, {"tokenizer_hash": digest, "files": rel_files, "num_tokens": num_tokens, "codebooks": codebooks,
                 "labels": labels, "audio_seconds": audio_seconds, "shard_items": shard_items, "image_size": size,
                 "limit": limit})

    def incomplete() -> list[int]:
        return [s for s in range(plan.num_shards) if not shard_complete(out, s, dtype.itemsize, codebooks)]

    rank = 0
    if incomplete():
        from ..train.export_module import predict_shards

        sampler = ShardBatchSampler(plan, out, batch_size, dtype.itemsize, codebooks)
        writer = ShardWriter(out, plan, dtype, tok.vocab_size)
        rank = predict_shards(tok, encode_kwargs, items, sampler, collate, writer, accelerator=accelerator,
                              devices=devices, num_nodes=num_nodes, progress=progress)
    missing = incomplete()
    if missing:
        raise RuntimeError(f"export: shards {missing[:10]} of {plan.num_shards} are incomplete after encoding")

    total = sum(int(np.load(out / f"{shard_name(s)}.idx.npy")[:, 1].sum()) for s in range(plan.num_shards)) * codebooks
    vocab = tok.vocab_size
    meta = {
        "format": FORMAT, "tokenizer": str(tokenizer), "tokenizer_hash": digest, "architecture": type(tok).__name__,
        "tokenizer_config": tok.config, "modality": modality, "vocab_size": vocab, "codebooks": codebooks,
        "dtype": dtype.name, "tokens_per_item": tok.check_num_tokens(num_tokens) if modality == "image" else None,
        "tokens_per_second": tok.tokens_per_second if modality == "audio" else None,
        "sample_rate": tok.sample_rate if modality == "audio" else None, "image_size": size,
        "num_tokens": num_tokens, "num_codebooks": num_codebooks, "audio_seconds": audio_seconds,
        "num_items": len(plan), "num_tokens_total": total, "shard_items": shard_items,
        "shards": [shard_name(s) for s in range(plan.num_shards)],
        "padded_items": int((plan.valid < plan.samples).sum()) if modality == "audio" else 0,
        "labels": {"mode": labels or "none", "names": label_names},
        "special_tokens": {"bos": vocab, "eos": vocab + 1, "pad": vocab + 2},
        "data": str(data),
    }
    if rank == 0:
        _finish(out, plan, meta, {"root": str(data), "files": rel_files})
    return meta


def _image_job(tok: Any, files: list[Path], labels: np.ndarray, num_tokens: int | None, num_codebooks: int | None,
               audio_seconds: float | None, image_size: int | None, shard_items: int, limit: int | None):
    """(plan, items, encode kwargs, codebooks, image size) of an image export; ValueError on audio-only options."""
    if num_codebooks is not None or audio_seconds is not None:
        raise ValueError("export: num_codebooks and audio_seconds apply to audio tokenizers only")
    tok.check_num_tokens(num_tokens)
    size = image_size or tok.image_size
    plan = plan_items("image", files, labels, shard_items, limit=limit)
    kwargs = {} if num_tokens is None else {"num_tokens": num_tokens}
    return plan, PlanItems(plan, image_size=size), kwargs, tok.num_codebooks, size


def _audio_job(tok: Any, files: list[Path], labels: np.ndarray, num_tokens: int | None, num_codebooks: int | None,
               audio_seconds: float | None, image_size: int | None, shard_items: int, limit: int | None):
    """(plan, items, encode kwargs, codebooks, None) of an audio export; ValueError on image-only options."""
    if num_tokens is not None or image_size is not None:
        raise ValueError("export: num_tokens and image_size apply to image tokenizers only")
    codebooks = tok.num_codebooks if num_codebooks is None else num_codebooks
    if not 1 <= codebooks <= tok.num_codebooks:
        raise ValueError(f"export: num_codebooks must be in 1..{tok.num_codebooks}, got {num_codebooks}")
    window = None if audio_seconds is None else round(audio_seconds * tok.sample_rate)
    if window is not None and window < tok.hop_length:
        raise ValueError(f"export: audio_seconds={audio_seconds} gives {window} samples, less than one token "
                         f"frame ({tok.hop_length} samples at {tok.sample_rate} Hz)")
    plan = plan_items("audio", files, labels, shard_items, tok.sample_rate, window, tok.hop_length, limit)
    kwargs = {} if num_codebooks is None else {"num_codebooks": num_codebooks}
    return plan, PlanItems(plan, sample_rate=tok.sample_rate), kwargs, codebooks, None


def _finish(out: Path, plan: Plan, meta: dict, sources: dict) -> None:
    """Rank 0, every shard on disk: sources.json, items.npy, stale temp files removed, meta.json last."""
    _write_json(out / "sources.json", sources)
    with open(out / "items.npy.tmp", "wb") as f:
        np.save(f, np.stack([plan.file_index, plan.start, plan.valid], axis=1))
    os.replace(out / "items.npy.tmp", out / "items.npy")
    for tmp in out.glob("shard_*.tmp"):
        tmp.unlink(missing_ok=True)
    _write_json(out / META, meta)


def _write_json(path: Path, record: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, path)

"""Read token shards written by `vtok export` (see `vtok.ar.export` for the format): memory-mapped, per item."""
from __future__ import annotations

import bisect
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .export import FORMAT, META, tokenizer_hash


class TokenShards(Dataset):
    """Items of an export: i -> (codes long (L,) when Q == 1 or (Q,T) when Q > 1, label int; -1 without labels)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        path = self.root / META
        if not path.is_file():
            raise ValueError(f"{self.root}: expected token shards written by `vtok export`, no {META} found")
        try:
            self.meta: dict[str, Any] = json.loads(path.read_text())
        except ValueError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from None
        if not isinstance(self.meta, dict) or self.meta.get("format") != FORMAT:
            found = self.meta.get("format") if isinstance(self.meta, dict) else type(self.meta).__name__
            raise ValueError(f"{path}: expected format {FORMAT!r}, got {found!r}")
        self.codebooks = int(self.meta["codebooks"])
        self.dtype = np.dtype(self.meta["dtype"])
        self.names: list[str] = list(self.meta["shards"])
        self.index: list[np.ndarray] = []
        for name in self.names:
            bin_path, idx_path = self.root / f"{name}.bin", self.root / f"{name}.idx.npy"
            for p in (bin_path, idx_path):
                if not p.is_file():
                    raise ValueError(f"{self.root}: shard file {p.name} listed in {META} is missing")
            idx = np.load(idx_path)
            tokens = int(idx[:, 1].sum()) * self.codebooks if len(idx) else 0
            if idx.ndim != 2 or idx.shape[1] != 3 or bin_path.stat().st_size != tokens * self.dtype.itemsize:
                raise ValueError(f"{bin_path}: holds {bin_path.stat().st_size} bytes, its index lists {tokens} "
                                 f"{self.dtype.name} tokens (a truncated or foreign shard; rerun the export)")
            self.index.append(idx)
        self.starts = np.cumsum([0] + [len(i) for i in self.index]).tolist()
        self._maps: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return self.starts[-1]

    def __getstate__(self) -> dict[str, Any]:
        # memmaps would be pickled as full copies into DataLoader workers: reopen them there instead
        return {**self.__dict__, "_maps": {}}

    def _tokens(self, shard: int) -> np.ndarray:
        """The flat token array of one shard, memory-mapped once per process."""
        if shard not in self._maps:
            path = self.root / f"{self.names[shard]}.bin"
            self._maps[shard] = (np.memmap(path, dtype=self.dtype, mode="r") if path.stat().st_size
                                 else np.zeros(0, self.dtype))
        return self._maps[shard]

    def locate(self, i: int) -> tuple[int, int]:
        """(shard, row) of item i."""
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"item {i} out of range for {n} items")
        i %= n
        shard = bisect.bisect_right(self.starts, i) - 1
        return shard, i - self.starts[shard]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        shard, row = self.locate(int(i))
        offset, length, label = (int(v) for v in self.index[shard][row])
        flat = np.asarray(self._tokens(shard)[offset : offset + self.codebooks * length], dtype=np.int64)
        codes = torch.from_numpy(flat)
        return (codes if self.codebooks == 1 else codes.view(self.codebooks, length)), label

    @property
    def lengths(self) -> np.ndarray:
        """Frames T' (tokens for images) of every item, (N,) int64."""
        return np.concatenate([i[:, 1] for i in self.index]) if self.index else np.zeros(0, np.int64)

    @property
    def labels(self) -> np.ndarray:
        """Label of every item (-1 without labels), (N,) int64."""
        return np.concatenate([i[:, 2] for i in self.index]) if self.index else np.zeros(0, np.int64)

    def check_tokenizer(self, tok: torch.nn.Module) -> None:
        """Raise ValueError unless `tok` is the tokenizer these shards were exported with (same hash)."""
        got, want = tokenizer_hash(tok), self.meta["tokenizer_hash"]
        if got != want:
            raise ValueError(f"{self.root}: shards were exported with tokenizer {self.meta.get('tokenizer')!r} "
                             f"(hash {want}), but the given {type(tok).__name__} has hash {got}: different "
                             "architecture, config or weights; decode with the exporting tokenizer")

    def token_counts(self) -> np.ndarray:
        """Occurrences of each id per codebook stream over all items: int64 (Q, vocab_size)."""
        q, vocab = self.codebooks, int(self.meta["vocab_size"])
        counts = np.zeros(q * vocab, dtype=np.int64)
        for s, idx in enumerate(self.index):
            if not len(idx):
                continue
            tokens = np.asarray(self._tokens(s), dtype=np.int64)
            offsets, lengths = idx[:, 0], idx[:, 1]
            sizes = q * lengths
            # codebook of each token: items are (Q, T') codebook-major, so position // T' within the item
            rel = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
            stream = rel // np.repeat(lengths, sizes)
            pos = np.repeat(offsets, sizes) + rel
            counts += np.bincount(stream * vocab + tokens[pos], minlength=q * vocab)
        return counts.reshape(q, vocab)

    def unigram_entropy_bits(self) -> float:
        """Entropy in bits of the unigram id distribution per codebook stream (the mean over Q streams)."""
        out = []
        for row in self.token_counts():
            total = row.sum()
            p = row[row > 0] / total if total else np.zeros(0)
            out.append(float(-(p * np.log2(p)).sum()))
        return float(np.mean(out))

    def split(self, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
        """(train, val) item indices, sorted: a seeded random val_fraction of the items (at least 1 when > 0)."""
        if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0 <= val_fraction < 1:
            raise ValueError(f"split: val_fraction must be in [0, 1), got {val_fraction!r}")
        n = len(self)
        n_val = 0 if val_fraction == 0 else min(max(n - 1, 0), max(1, math.floor(val_fraction * n + 0.5)))
        order = np.random.default_rng(seed).permutation(n)
        return sorted(order[n_val:].tolist()), sorted(order[:n_val].tolist())


def load_shards(root: str | Path, tokenizer: torch.nn.Module | str | None = None) -> TokenShards:
    """Token shards in `root`; with a tokenizer (object or `vtok.load` source), refuse shards from another one."""
    shards = TokenShards(root)
    if tokenizer is not None:
        if isinstance(tokenizer, (str, Path)):
            from ..hub import load

            tokenizer = load(tokenizer)
        shards.check_tokenizer(tokenizer)
    return shards

"""Codebook usage over a running window of tokens: usage fraction, perplexity, dead codes."""
from __future__ import annotations

import weakref
from collections.abc import Iterator, Mapping

import torch
import torch.distributed as dist
from torch import Tensor, nn


def is_distributed() -> bool:
    """True inside an initialised process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class UsageStats(Mapping):
    """usage (fraction of codes seen), perplexity (exp entropy), dead_codes (never seen), averaged
    over codebooks, for the window as it was when the stats were taken.

    Computed on first access, so stats nobody reads cost nothing; if the window is about to
    change while these stats are unread, `CodeUsage` makes them keep a copy first.
    """

    KEYS = ("usage", "perplexity", "dead_codes")

    def __init__(self, usage: "CodeUsage"):
        self._usage: CodeUsage | None = usage
        self._counts: Tensor | None = None
        self._values: dict[str, Tensor] | None = None

    def freeze(self) -> None:
        """Keep a copy of the window's counts, before the window changes."""
        if self._usage is not None:
            self._counts, self._usage = self._usage.counts(), None

    def _compute(self) -> dict[str, Tensor]:
        if self._values is None:
            self.freeze()
            with torch.no_grad():
                counts = self._counts
                p = counts / counts.sum(-1, keepdim=True).clamp_min(1)
                entropy = -(p * p.clamp_min(1e-12).log()).sum(-1)
                self._values = {
                    "usage": (counts > 0).float().mean(),
                    "perplexity": entropy.exp().mean(),
                    "dead_codes": (counts == 0).sum(-1).float().mean(),
                }
            self._counts = None
        return self._values

    def __getitem__(self, key: str) -> Tensor:
        return self._compute()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.KEYS)

    def __len__(self) -> int:
        return len(self.KEYS)

    def __repr__(self) -> str:
        return "UsageStats(" + ", ".join(f"{k}={v.item():.4g}" for k, v in self._compute().items()) + ")"


class CodeUsage(nn.Module):
    """Histogram of code ids over the last `window` to 2*`window` tokens, per codebook.

    Two histograms take turns: counts land in `current`; when it has seen `window` tokens it
    becomes `previous` and a fresh one starts, so the stats always cover at least `window`
    tokens (once that many were seen). Counts are summed across DDP ranks when `sync`.
    """

    def __init__(self, num_codebooks: int, codebook_size: int, window: int | None = None):
        super().__init__()
        self.num_codebooks, self.codebook_size = num_codebooks, codebook_size
        self.window = window or max(8 * codebook_size, 4096)
        size = num_codebooks * codebook_size + 1  # + one spare bin that swallows id -1 (a dropped level)
        self.register_buffer("current", torch.zeros(size), persistent=False)
        self.register_buffer("previous", torch.zeros(size), persistent=False)
        self.register_buffer("offsets", torch.arange(num_codebooks) * codebook_size, persistent=False)
        self.seen = 0  # tokens in `current`, counted on the host so no device sync is needed
        self._unread: weakref.ref | None = None  # the last stats handed out, while nobody read them

    def _before_change(self) -> None:
        stats = self._unread() if self._unread is not None else None
        if stats is not None:
            stats.freeze()
        self._unread = None

    @torch.no_grad()
    def update(self, ids: Tensor, sync: bool = False) -> None:
        """Count ids (..., Q) long in [0, K); -1 (a level dropped in training) is not counted."""
        self._before_change()
        ids = ids.reshape(-1, self.num_codebooks)
        flat = torch.where(ids < 0, self.current.numel() - 1, ids + self.offsets).flatten()
        ones = torch.ones_like(flat, dtype=self.current.dtype)
        tokens = ids.shape[0]
        if sync and is_distributed():
            hist = torch.zeros_like(self.current).index_add_(0, flat, ones)
            dist.all_reduce(hist)
            self.current += hist
            tokens *= dist.get_world_size()
        else:
            self.current.index_add_(0, flat, ones)
        self.seen += tokens
        if self.seen >= self.window:
            self.previous.copy_(self.current)
            self.current.zero_()
            self.seen = 0

    def counts(self) -> Tensor:
        """Code counts in the window, (Q, K)."""
        q, k = self.num_codebooks, self.codebook_size
        return (self.current[:-1] + self.previous[:-1]).view(q, k)

    def reset(self) -> None:
        """Forget all counts."""
        self._before_change()
        self.current.zero_()
        self.previous.zero_()
        self.seen = 0

    def stats(self) -> UsageStats:
        """Usage, perplexity and dead-code stats of the current window (computed when read)."""
        stats = UsageStats(self)
        self._unread = weakref.ref(stats)
        return stats

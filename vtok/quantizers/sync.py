"""Make vector-quantize-pytorch codebooks sync across DDP ranks, decided at run time.

vector-quantize-pytorch decides whether to all-reduce EMA statistics when the module is
*built* (`sync_codebook = is_distributed()`), but Lightning builds the model before it
starts the process group, so codebooks silently drift apart across ranks. We build with
sync off and replace the codebook's reduce/sample hooks with ones that check at call time.
"""
from __future__ import annotations

from torch import Tensor, nn
import torch.distributed as dist
from vector_quantize_pytorch.vector_quantize_pytorch import (
    Codebook,
    batched_sample_vectors,
    sample_vectors_distributed,
)

from .stats import is_distributed


def _all_reduce(t: Tensor) -> None:
    if is_distributed():
        dist.all_reduce(t)


def _sample_vectors(samples: Tensor, num: int) -> Tensor:
    if is_distributed():
        return sample_vectors_distributed(samples, num)
    return batched_sample_vectors(samples, num)


def sync_codebooks_at_runtime(module: nn.Module) -> None:
    """Point every vector-quantize-pytorch Codebook inside `module` at run-time DDP hooks."""
    for m in module.modules():
        if isinstance(m, Codebook):
            m.all_reduce_fn = _all_reduce
            m.kmeans_all_reduce_fn = _all_reduce
            m.sample_fn = _sample_vectors
            m.replace_sample_fn = _sample_vectors

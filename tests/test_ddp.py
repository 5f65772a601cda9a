"""Two gloo ranks train a quantizer on different data and must end with identical codebooks."""
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel as DDP

from vtok.quantizers import build

QUANTIZERS = {
    "vq": dict(kind="vq", dim=8, codebook_size=32, kmeans_init=True, dead_code_threshold=2.0),
    "vq-cosine": dict(kind="vq", dim=8, codebook_size=32, distance="cosine", dead_code_threshold=2.0),
    "rvq": dict(kind="rvq", dim=8, codebook_size=16, num_codebooks=3, quantizer_dropout=True, dead_code_threshold=2.0),
}


class Tiny(torch.nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.enc = torch.nn.Linear(4, 8)
        self.q = build(**cfg)

    def forward(self, x):
        out = self.q(self.enc(x))
        return out.z_q.square().mean() + out.loss, out.stats


def _worker(rank, world, init_file, out_dir, name, sync):
    torch.manual_seed(0)
    model = Tiny(QUANTIZERS[name])  # built before the process group exists, as Lightning does
    if not sync:  # the control: vector-quantize-pytorch's construction-time choice, without vtok's fix
        from vtok.quantizers.sync import Codebook, batched_sample_vectors

        for m in model.modules():
            if isinstance(m, Codebook):
                m.all_reduce_fn = m.kmeans_all_reduce_fn = lambda t: None
                m.sample_fn = m.replace_sample_fn = batched_sample_vectors
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    # no buffer broadcast: DDP would otherwise copy rank 0's codebook over the others each step,
    # hiding codebooks that were updated from one rank's data only
    ddp = DDP(model, broadcast_buffers=False)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(100 + rank)  # each rank sees different data
    for _ in range(6):
        x = torch.randn(16, 10, 4, generator=gen) * (1 + rank)
        loss, stats = ddp(x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    state.update({f"stats.{k}": v for k, v in stats.items()})
    torch.save(state, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def run_two_ranks(tmp_path, name, sync=True):
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path), name, sync), nprocs=2, join=True)
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]


@pytest.mark.parametrize("name", QUANTIZERS)
def test_two_gloo_ranks_end_with_identical_codebooks(tmp_path, name):
    a, b = run_two_ranks(tmp_path, name)
    assert a.keys() == b.keys()
    codebook_keys = [k for k in a if "embed" in k or "cluster_size" in k]
    assert codebook_keys
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=f"{name}: {key} differs across ranks")


def test_without_sync_the_ranks_drift_apart(tmp_path):
    a, b = run_two_ranks(tmp_path, "vq", sync=False)
    assert not torch.equal(a["q.vq._codebook.embed"], b["q.vq._codebook.embed"])

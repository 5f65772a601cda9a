"""Forward+backward time of vtok quantizers against the vector-quantize-pytorch class called directly.

    python eval/bench_quantizers.py [--batch 16] [--tokens 256] [--dim 256] [--seconds 1] [--rounds 7] [--threads 1]

Each round times vtok and the library one after the other (order alternating) for about --seconds each (at least 3 steps),
so slow drifts in machine load hit both alike. Prints a markdown table: median ms per step
and vtok's overhead: the median over rounds of the
within-round ratio (target <= 3%), plus the time of vtok's own work per step (checks, usage
window, stats) timed alone, which shows the overhead without the A/B noise of a shared
machine. Run it on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from vector_quantize_pytorch import FSQ, LFQ, ResidualVQ, VectorQuantize

from vtok.quantizers import build
from vtok.quantizers.base import check_latents


def cases(dim: int) -> dict[str, tuple[dict, callable]]:
    """kind -> (vtok build keywords, a factory of the same vector-quantize-pytorch module)."""
    vq_lib = dict(decay=0.99, commitment_weight=0.25, rotation_trick=False, straight_through=False, sync_codebook=False)
    return {
        "vq": (dict(kind="vq", dim=dim, codebook_size=4096),
               lambda: VectorQuantize(dim=dim, codebook_size=4096, **vq_lib)),
        "rvq": (dict(kind="rvq", dim=dim, codebook_size=1024, num_codebooks=8),
                lambda: ResidualVQ(dim=dim, codebook_size=1024, num_quantizers=8, **vq_lib)),
        "fsq": (dict(kind="fsq", dim=dim, levels=[8, 8, 8, 5, 5, 5]),
                lambda: FSQ(levels=[8, 8, 8, 5, 5, 5], dim=dim)),
        "lfq": (dict(kind="lfq", dim=dim, codebook_size=2**12),
                lambda: LFQ(dim=dim, codebook_size=2**12, entropy_loss_weight=0.1, commitment_loss_weight=0.25)),
    }


def lib_step(module, z):
    out = module(z)
    loss = out[0].square().mean()
    if len(out) > 2:
        loss = loss + out[2].sum()
    loss.backward()


def vtok_step(module, z):
    out = module(z)
    (out.z_q.square().mean() + out.loss).backward()


def time_step(step, module, z: torch.Tensor, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        z.grad = None
        t0 = time.perf_counter()
        step(module, z)
        times.append(time.perf_counter() - t0)
    return times


def own_work_us(q, z: torch.Tensor, repeats: int = 300) -> float:
    """Median µs of what vtok adds around the library call: input checks, id cast, usage window, stats."""
    with q.inference():
        ids = q.quantize(z.detach())[1]
    ids = ids if q.multi_codebook else ids.unsqueeze(-1)

    def work():
        check_latents(z, q.dim)
        q.usage.update(ids.long())
        q.usage.stats()

    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        work()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--seconds", type=float, default=1.0, help="time per side per round")
    ap.add_argument("--rounds", type=int, default=7, help="alternate vtok/library this many times")
    ap.add_argument("--threads", type=int, default=1, help="torch threads; 1 keeps thread-pool jitter out")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"z = ({args.batch}, {args.tokens}, {args.dim}), {args.rounds} rounds of ~{args.seconds:g} s per side\n")
    print("| kind | vector-quantize-pytorch ms | vtok ms | overhead (A/B) | vtok's own work per step |")
    print("|---|---|---|---|---|")
    for kind, (cfg, make_lib) in cases(args.dim).items():
        torch.manual_seed(0)
        ours = build(**cfg).train()
        torch.manual_seed(0)
        lib = make_lib().train()
        z = torch.randn(args.batch, args.tokens, args.dim, requires_grad=True)
        warm = time_step(vtok_step, ours, z, 3) + time_step(lib_step, lib, z, 3)
        repeats = max(3, round(args.seconds / min(warm)))
        t_ours, t_lib, ratios = [], [], []
        for r in range(args.rounds):  # ABBA order, and the ratio taken within each round
            sides = [(lib_step, lib, t_lib), (vtok_step, ours, t_ours)]
            for step, module, times in sides if r % 2 == 0 else sides[::-1]:
                times.append(statistics.median(time_step(step, module, z, repeats)))
            ratios.append(t_ours[-1] / t_lib[-1])
        m_lib, m_ours = statistics.median(t_lib) * 1e3, statistics.median(t_ours) * 1e3
        own = own_work_us(ours, z)
        print(f"| {kind} | {m_lib:.2f} | {m_ours:.2f} | {100 * (statistics.median(ratios) - 1):+.1f}% "
              f"| {own:.0f} µs = {own / (10 * m_lib):.2f}% |")


if __name__ == "__main__":
    main()

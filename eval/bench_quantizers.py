"""Forward+backward time of vtok quantizers against the vector-quantize-pytorch class called directly.

    python eval/bench_quantizers.py [--batch 16] [--tokens 256] [--dim 256] [--repeats 30]

Prints a markdown table: median ms per step for each, and vtok's overhead ratio (target <= 3%).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from vector_quantize_pytorch import FSQ, LFQ, ResidualVQ, VectorQuantize

from vtok.quantizers import build


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
        "lfq": (dict(kind="lfq", dim=dim, codebook_size=2**14),
                lambda: LFQ(dim=dim, codebook_size=2**14, entropy_loss_weight=0.1, commitment_loss_weight=0.25)),
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=5, help="alternate vtok/library this many times")
    args = ap.parse_args()

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"z = ({args.batch}, {args.tokens}, {args.dim}), median over {args.rounds} x {args.repeats} steps\n")
    print("| kind | vector-quantize-pytorch ms | vtok ms | overhead |")
    print("|---|---|---|---|")
    for kind, (cfg, make_lib) in cases(args.dim).items():
        torch.manual_seed(0)
        ours = build(**cfg).train()
        torch.manual_seed(0)
        lib = make_lib().train()
        z = torch.randn(args.batch, args.tokens, args.dim, requires_grad=True)
        for step, module in ((vtok_step, ours), (lib_step, lib)):  # warm-up
            time_step(step, module, z, 3)
        t_ours, t_lib = [], []
        for _ in range(args.rounds):  # interleave so drifts in machine load hit both alike
            t_lib += time_step(lib_step, lib, z, args.repeats)
            t_ours += time_step(vtok_step, ours, z, args.repeats)
        m_lib, m_ours = statistics.median(t_lib) * 1e3, statistics.median(t_ours) * 1e3
        print(f"| {kind} | {m_lib:.2f} | {m_ours:.2f} | {100 * (m_ours / m_lib - 1):+.1f}% |")


if __name__ == "__main__":
    main()

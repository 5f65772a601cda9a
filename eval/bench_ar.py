"""Sampling speed of vtok's GPT with and without the KV cache.

    python eval/bench_ar.py [--device cpu] [--batch 8] [--new-tokens 256] [--n-layer 6] [--n-embd 384]
                            [--n-head 6] [--vocab 4099] [--threads 1]

Greedy sampling of --new-tokens positions after a one-id prefix, batch --batch, from a randomly
initialised GPT (speed does not depend on the weights). Without the cache every step runs the
whole sequence again. Prints a markdown table: seconds, generated tokens/s (batch x new tokens
over wall time) and the speed-up of the cache (target >= 5x), and whether both paths gave the
same tokens.
"""
from __future__ import annotations

import argparse
import time

import torch

from vtok.ar import GPT


def timed_generate(model: GPT, prefix: torch.Tensor, new_tokens: int, use_cache: bool) -> tuple[float, torch.Tensor]:
    """(seconds, output) of one greedy generate call, device synchronised."""
    if prefix.device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = model.generate(prefix, new_tokens, temperature=0.0, use_cache=use_cache)
    if prefix.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--n-layer", type=int, default=6)
    ap.add_argument("--n-embd", type=int, default=384)
    ap.add_argument("--n-head", type=int, default=6)
    ap.add_argument("--vocab", type=int, default=4099, help="ids per stream, special ids included")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = GPT(vocab_size=args.vocab, block_size=1 + args.new_tokens, n_layer=args.n_layer, n_head=args.n_head,
                n_embd=args.n_embd).to(args.device).eval()
    prefix = torch.zeros(args.batch, 1, dtype=torch.long, device=args.device)
    for use_cache in (True, False):  # warm-up
        model.generate(prefix, 8, temperature=0.0, use_cache=use_cache)

    t_cache, out_cache = timed_generate(model, prefix, args.new_tokens, use_cache=True)
    t_full, out_full = timed_generate(model, prefix, args.new_tokens, use_cache=False)
    generated = args.batch * args.new_tokens

    print(f"GPT {args.n_layer} x {args.n_embd} ({args.n_head} heads), {model.num_params / 1e6:.1f} M parameters, "
          f"vocab {args.vocab}, batch {args.batch}, {args.new_tokens} new tokens, device {args.device}"
          + (f", {args.threads} thread(s)" if args.device == "cpu" else ""))
    print()
    print("| path | seconds | tokens/s |")
    print("|---|---:|---:|")
    print(f"| KV cache | {t_cache:.2f} | {generated / t_cache:,.0f} |")
    print(f"| no cache (full recompute) | {t_full:.2f} | {generated / t_full:,.0f} |")
    print()
    print(f"speed-up of the KV cache: {t_full / t_cache:.1f}x (target >= 5x); "
          f"same tokens on both paths: {'yes' if torch.equal(out_cache, out_full) else 'no'}")


if __name__ == "__main__":
    main()

"""Encode / decode throughput (images/s) of vtok's paper-scale 1D image tokenizers on this machine,
and of the official TiTok code on the same random weights when a checkout of it is given.

    python eval/bench_image_tokenizers.py [--models titok-s-128 titok-b-64 ...] [--batch-sizes 8 32]
        [--rounds 3] [--threads N] [--official PATH/TO/bytedance-1d-tokenizer]

Models are built with random weights (seeded). With --official, the official `modeling.titok.TiTok`
is built from the matching official config, vtok's weights are mapped onto it (the inverse of
`TiTok.convert_official`), outputs are checked to agree, and each round times both, one after the
other, order alternating; the table shows the median images/s and the median within-round ratio
vtok/official. One-D-Piece releases run on the official TiTok class (same network, 256 tokens).
The official code needs omegaconf, einops, accelerate and huggingface_hub importable.

FlexTok (`--flextok flextok-d12-d12 ...`, default the d12-d12 size; `--flextok` with no names skips it) gets
its own table: encode images/s, then decode seconds per image for each number of flow steps in
`--flow-steps` (decode time grows with the steps, not with the number of tokens kept), with and
without classifier-free guidance (guidance doubles the decoder passes).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

import vtok
from vtok.image.titok import OFFICIAL_RENAMES, TiTok

PAPER = ["titok-s-128", "titok-b-64", "titok-l-32", "titok-bl-64-vq", "titok-bl-128-vq", "titok-sl-256-vq",
         "onedpiece-s-256", "onedpiece-b-256", "onedpiece-l-256"]
SIZE_NAME = {512: "small", 768: "base", 1024: "large"}


# --- the official model on vtok's weights -------------------------------------------------------
def official_config(model: TiTok) -> dict:
    """The official TiTok config (OmegaConf-style dict) of a vtok paper-scale TiTok."""
    cfg, enc, dec = model.config, model.encoder, model.decoder
    q = cfg["quantizer"]
    vq = {
        "codebook_size": q["codebook_size"], "token_size": cfg["token_dim"], "use_l2_norm": q.get("distance") == "cosine",
        "commitment_cost": q.get("commitment_weight", 0.25),
        "vit_enc_model_size": SIZE_NAME[enc.patch_embed.out_channels], "vit_dec_model_size": SIZE_NAME[dec.decoder_embed.out_features],
        "vit_enc_patch_size": cfg["patch_size"], "vit_dec_patch_size": cfg["patch_size"], "num_latent_tokens": cfg["num_tokens"],
        "finetune_decoder": cfg["legacy"], "is_legacy": cfg["legacy"], "quantize_mode": "vq",
    }
    return {"model": {"vq_model": vq}, "dataset": {"preprocessing": {"crop_size": cfg["image_size"]}}}


def to_official_state(model: TiTok) -> dict[str, torch.Tensor]:
    """vtok's state dict in the official key layout (the inverse of TiTok.convert_official)."""
    out = {}
    for key, value in model.state_dict().items():
        if key.startswith("quantizer.") and "codebook" not in key and "embed" not in key and "embedding" not in key:
            continue  # vtok's usage statistics
        new = key
        if not model.legacy:
            new = new.replace("decoder.head.", "decoder.head.0.")
        for old, rep in reversed(OFFICIAL_RENAMES):
            if not new.startswith("pixel_decoder."):  # the VQGAN decoder has official names already
                new = new.replace(rep, old)
        if ("to_tokens" in key or "decoder.head" in key) and value.ndim == 2:
            value = value[:, :, None, None]
        out[new] = value
    if "quantizer.vq.embedding.weight" in out:
        out["quantize.embedding.weight"] = out.pop("quantizer.vq.embedding.weight")
    else:
        out["quantize.embedding.weight"] = out.pop("quantizer.vq._codebook.embed")[0]
        for k in [k for k in out if k.startswith("quantizer.vq._codebook")]:
            del out[k]
    return out


def build_official(path: Path, model: TiTok) -> torch.nn.Module:
    sys.path.insert(0, str(path))
    from modeling.titok import TiTok as Official  # noqa: E402  (the user's checkout)

    torch.manual_seed(0)
    official = Official(official_config(model))
    state = to_official_state(model)
    missing, unexpected = official.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise SystemExit(f"official layout mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return official.eval()


# --- timing -------------------------------------------------------------------------------------
def vtok_fns(model: TiTok):
    return (lambda x: model.encode(x)), (lambda ids: model.decode(ids))


def official_fns(official):
    def encode(x):
        return official.encode(x)[1]["min_encoding_indices"].reshape(x.shape[0], -1)

    def decode(ids):
        return official.decode_tokens(ids).clamp(0.0, 1.0)

    return encode, decode


def seconds(fn, arg) -> float:
    t0 = time.perf_counter()
    with torch.inference_mode():
        fn(arg)
    return time.perf_counter() - t0


def bench(name: str, batch: int, rounds: int, official_path: Path | None) -> dict:
    torch.manual_seed(0)
    model = vtok.create(name).eval()
    x = torch.rand(batch, 3, model.image_size, model.image_size)
    impls = {"vtok": vtok_fns(model)}
    if official_path is not None:
        impls["official"] = official_fns(build_official(official_path, model))
    with torch.inference_mode():
        ids = model.encode(x)
        if "official" in impls:  # same weights, same answers
            assert torch.equal(impls["official"][0](x), ids), f"{name}: official ids differ"
            diff = (impls["official"][1](ids) - model.decode(ids)).abs().max().item()
            assert diff < 1e-3, f"{name}: official decode differs by {diff}"
    times = {impl: {"encode": [], "decode": []} for impl in impls}
    for r in range(rounds):
        order = list(impls) if r % 2 == 0 else list(reversed(impls))
        for impl in order:
            enc, dec = impls[impl]
            times[impl]["encode"].append(seconds(enc, x))
            times[impl]["decode"].append(seconds(dec, ids))
    row = {"model": name, "batch": batch}
    for impl in impls:
        for op in ("encode", "decode"):
            row[f"{impl} {op}"] = batch / statistics.median(times[impl][op])
    if "official" in impls:
        for op in ("encode", "decode"):
            row[f"{op} ratio"] = statistics.median(o / v for v, o in zip(times["vtok"][op], times["official"][op]))
    return row


def bench_flextok(name: str, batch: int, rounds: int, steps: list[int], num_tokens: int) -> dict:
    """FlexTok encode images/s and decode s/image at each flow-step count, without and with CFG."""
    torch.manual_seed(0)
    model = vtok.create(name).eval()
    x = torch.rand(batch, 3, model.image_size, model.image_size)
    ids = model.encode(x, num_tokens=num_tokens)
    model.decode(ids[:1], steps=1)  # warm-up: the first call imports diffusers' scheduler
    row = {"model": name, "batch": batch, "tokens": num_tokens,
           "encode": batch / statistics.median(seconds(model.encode, x) for _ in range(rounds))}
    for n in steps:
        for guidance in (1.0, 7.5):
            t = statistics.median(seconds(lambda i: model.decode(i, steps=n, guidance=guidance), ids) for _ in range(rounds))
            row[f"decode {n}" + (" cfg" if guidance != 1.0 else "")] = t / batch
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", default=PAPER, help="TiTok-family models (none: skip)")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[8, 32])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--official", type=Path, default=None, help="a checkout of bytedance/1d-tokenizer")
    parser.add_argument("--flextok", nargs="*", default=["flextok-d12-d12"], help="FlexTok models (none: skip)")
    parser.add_argument("--flow-steps", nargs="+", type=int, default=[1, 4, 8, 25])
    parser.add_argument("--flextok-tokens", type=int, default=256, help="tokens kept when decoding")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cols = ["vtok encode", "vtok decode"] + (["official encode", "official decode", "encode ratio", "decode ratio"] if args.official else [])
    print(f"torch {torch.__version__}, {args.threads} threads, {args.rounds} rounds, CPU, random weights; images/s (ratio = vtok / official)\n")
    if args.models:
        print("| model | batch | " + " | ".join(cols) + " |")
        print("|---|---|" + "---|" * len(cols), flush=True)
    for model in args.models:
        for batch in args.batch_sizes:  # one row at a time: a paper-scale row takes minutes on a CPU
            row = bench(model, batch, args.rounds, args.official)
            cells = [f"{row[c]:.2f}x" if "ratio" in c else f"{row[c]:.2f}" for c in cols]
            print(f"| {row['model']} | {row['batch']} | " + " | ".join(cells) + " |", flush=True)
    if args.flextok:
        cols = [f"decode {n}{cfg}" for n in args.flow_steps for cfg in ("", " cfg")]
        print("\nFlexTok: encode images/s; decode s/image at each number of flow steps (cfg: guidance 7.5)\n")
        print("| model | batch | tokens | encode | " + " | ".join(f"{n} steps{cfg}" for n in args.flow_steps for cfg in ("", " +cfg")) + " |")
        print("|---|---|---|---|" + "---|" * len(cols), flush=True)
        for model in args.flextok:
            for batch in args.batch_sizes:
                row = bench_flextok(model, batch, args.rounds, args.flow_steps, args.flextok_tokens)
                cells = [f"{row['encode']:.2f}"] + [f"{row[c]:.3f}" for c in cols]
                print(f"| {model} | {batch} | {row['tokens']} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
